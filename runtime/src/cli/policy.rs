//! `toolgate policy`: validate, test, explain and format policy sets.
//! Exit status: 0 ok (explain: allowed), 1 invalid / failing / denied, 2 usage error.

use super::{EXIT_TASK_FAILED, print_json};
use crate::policy::{
    Action, AuthzRequest, PolicyEngine, PolicyOrigin, parse_entity_ref, run_tests,
};
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Parse and strictly validate a policy directory against its schema; list every problem.
    Validate {
        /// Directory with schema.cedarschema, *.cedar and entities.json.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Run the policy tests in DIR/tests/*.json.
    Test {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Decide one request and say why.
    Explain {
        /// A Principal id, e.g. `alice`.
        #[arg(long)]
        principal: String,
        /// create_session, invoke, read_file, write_file, connect, read_secret or use_model.
        #[arg(long)]
        action: String,
        /// A Cedar entity reference, e.g. `Tool::"fs.read"`.
        #[arg(long)]
        resource: String,
        /// The request context, a JSON object (Cedar's JSON form) checked against the
        /// action's context in the schema; `@FILE` reads it from a file, `-` from stdin.
        #[arg(long, default_value = "{}")]
        context: String,
        /// Policy directory [default: the policies built into the binary].
        #[arg(long, env = "TOOLGATE_POLICIES")]
        policies: Option<PathBuf>,
        /// Extra Cedar entities (a JSON list), e.g. principals.
        #[arg(long)]
        entities: Option<PathBuf>,
    },
    /// Format the *.cedar files of DIR in place (or only check them), exactly as the
    /// official `cedar format --line-width 100 --indent-width 4` does.
    Fmt {
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Change nothing; exit 1 if a file is not formatted.
        #[arg(long)]
        check: bool,
    },
}

pub(crate) fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Validate { dir } => validate(&dir),
        PolicyCommand::Test { dir } => test(&dir),
        PolicyCommand::Explain {
            principal,
            action,
            resource,
            context,
            policies,
            entities,
        } => explain(principal, &action, &resource, &context, policies, entities),
        PolicyCommand::Fmt { dir, check } => fmt(&dir, check),
    }
}

fn validate(dir: &Path) -> anyhow::Result<ExitCode> {
    match PolicyEngine::load(PolicyOrigin::Dir(dir.to_owned())) {
        Ok(engine) => {
            let status = engine.status();
            println!(
                "ok: {} policies, version {}",
                status.policies, status.version
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            for problem in &error.problems {
                eprintln!("{problem}");
            }
            eprintln!("invalid: {} problem(s)", error.problems.len());
            Ok(ExitCode::from(EXIT_TASK_FAILED))
        }
    }
}

fn test(dir: &Path) -> anyhow::Result<ExitCode> {
    let results = match run_tests(dir) {
        Ok(results) => results,
        Err(crate::policy::PolicyTestError::Policies(error)) => {
            for problem in &error.problems {
                eprintln!("{problem}");
            }
            return Ok(ExitCode::from(EXIT_TASK_FAILED));
        }
        Err(other) => return Err(other.into()),
    };
    let failed = results.iter().filter(|r| !r.passed).count();
    for result in &results {
        let mark = if result.passed { "ok  " } else { "FAIL" };
        println!("{mark} {} [{}] {}", result.name, result.action, result.file);
        if let Some(failure) = &result.failure {
            println!("     {failure}; reasons {:?}", result.reasons);
            for error in &result.errors {
                println!("     error: {error}");
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_TASK_FAILED)
    })
}

fn explain(
    principal: String,
    action: &str,
    resource: &str,
    context: &str,
    policies: Option<PathBuf>,
    entities: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let Some(action) = Action::parse(action) else {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        bail!("unknown action `{action}` (one of: {})", names.join(", "));
    };
    let resource = parse_entity_ref(resource).map_err(anyhow::Error::msg)?;
    let context = read_context(context)?;
    let origin = policies.map_or(PolicyOrigin::Embedded, PolicyOrigin::Dir);
    let engine = PolicyEngine::load(origin)?;
    engine
        .check_context(action, &context)
        .map_err(|e| anyhow::anyhow!("--context is not a context of `{}`: {e}", action.as_str()))?;
    if let Some(path) = entities {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let list: Vec<serde_json::Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON list", path.display()))?;
        engine.upsert_entities(list)?;
    }
    let decision = engine.decide(&AuthzRequest {
        principal,
        action,
        resource,
        context,
    });
    let mut report = serde_json::to_value(&decision)?;
    report["decision"] = json!(if decision.allowed { "allow" } else { "deny" });
    report["why"] = json!(decision.explanation());
    print_json(&report)?;
    Ok(if decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_TASK_FAILED)
    })
}

/// `--context`: a JSON object, `@FILE` or `-` (stdin).
fn read_context(arg: &str) -> anyhow::Result<serde_json::Value> {
    let (text, from) = if arg == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading --context from stdin")?;
        (text, "stdin".to_owned())
    } else if let Some(path) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --context from {path}"))?;
        (text, path.to_owned())
    } else {
        (arg.to_owned(), "--context".to_owned())
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{from} is not JSON"))?;
    anyhow::ensure!(value.is_object(), "{from} must be a JSON object");
    Ok(value)
}

/// The settings of `cedar format -l 100 -i 4`: the shipped files are in that form.
pub(crate) const FORMAT: cedar_policy_formatter::Config = cedar_policy_formatter::Config {
    line_width: 100,
    indent_width: 4,
};

fn fmt(dir: &Path, check: bool) -> anyhow::Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("cedar"))
        .collect();
    files.sort();
    let mut unformatted = 0;
    for path in files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let pretty = cedar_policy_formatter::policies_str_to_pretty(&text, &FORMAT)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
        if pretty != text {
            unformatted += 1;
            if check {
                println!("not formatted: {}", path.display());
            } else {
                std::fs::write(&path, pretty)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("formatted: {}", path.display());
            }
        }
    }
    Ok(if check && unformatted > 0 {
        ExitCode::from(EXIT_TASK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
