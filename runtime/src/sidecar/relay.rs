//! The orchestrator's end of one remote session's event stream: frames go to the task they
//! belong to, in order, each once, however often the connection is cut and resumed.

use super::wire::{Frame, TaskEvent, TaskFinished};
use super::{SidecarError, TaskEvents};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A frame line longer than this is garbled or hostile: it is dropped and its task fails.
pub(super) const MAX_FRAME_BYTES: usize = 64 << 20;

struct Waiter {
    events: Arc<dyn TaskEvents>,
    done: oneshot::Sender<Result<TaskFinished, SidecarError>>,
}

pub(super) struct Relay {
    pub session: String,
    waiters: Mutex<HashMap<String, Waiter>>,
    /// The last frame handed on (the stream resumes after it).
    cursor: AtomicU64,
    /// The last frame the sidecar was told is stored.
    pub acked: AtomicU64,
    /// Stops the relay's connection loop.
    pub stop: CancellationToken,
}

impl Relay {
    pub fn new(session: String) -> Arc<Self> {
        Arc::new(Self {
            session,
            waiters: Mutex::default(),
            cursor: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            stop: CancellationToken::new(),
        })
    }

    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::SeqCst)
    }

    /// Waits for task `task`'s frames; registered before the task is sent, so none is missed.
    pub fn register(
        &self,
        task: &str,
        events: Arc<dyn TaskEvents>,
    ) -> oneshot::Receiver<Result<TaskFinished, SidecarError>> {
        let (done, finished) = oneshot::channel();
        self.lock().insert(task.to_owned(), Waiter { events, done });
        finished
    }

    pub fn forget(&self, task: &str) {
        self.lock().remove(task);
    }

    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Hands one frame on. A frame at or before the cursor was handed on before the
    /// connection broke and is skipped; one for a task nobody waits for (sent before this
    /// orchestrator restarted, its task since marked interrupted) is dropped.
    pub fn dispatch(&self, frame: Frame) {
        if frame.seq <= self.cursor() {
            return;
        }
        let mut waiters = self.lock();
        match frame.event {
            TaskEvent::Finished { finished } => {
                if let Some(waiter) = waiters.remove(&frame.task) {
                    let _ = waiter.done.send(Ok(finished));
                }
            }
            event => {
                if let Some(waiter) = waiters.get(&frame.task) {
                    waiter.events.emit(event);
                }
            }
        }
        // Moved under the waiters' lock: two dispatchers never interleave.
        self.cursor.store(frame.seq, Ordering::SeqCst);
    }

    /// A frame that does not read as one: its task fails with `error` and the stream goes on
    /// after it (else the same frame would stop the relay forever).
    pub fn skip(&self, seq: u64, task: &str, error: SidecarError) {
        if seq <= self.cursor() {
            return;
        }
        let mut waiters = self.lock();
        if let Some(waiter) = waiters.remove(task) {
            let _ = waiter.done.send(Err(error));
        }
        self.cursor.store(seq, Ordering::SeqCst);
    }

    /// Every waiting task ends with `error` (the sidecar was lost).
    pub fn fail_all(&self, error: &SidecarError) {
        for (_, waiter) in self.lock().drain() {
            let _ = waiter.done.send(Err(error.clone()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One line of the event stream.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    Whole(Vec<u8>),
    /// A line past [`MAX_FRAME_BYTES`]: only its beginning is kept (it names the frame's
    /// `seq` and `task`), the rest is dropped as it comes.
    Oversized {
        head: Vec<u8>,
    },
}

/// Bytes of an oversized line kept to find out which frame it was.
const HEAD_BYTES: usize = 256;

/// Splits a byte stream into lines, holding a partial line until its end comes.
#[derive(Default)]
pub(super) struct Lines {
    partial: Vec<u8>,
    /// Inside an oversized line: bytes are dropped until its end.
    discarding: bool,
}

impl Lines {
    /// The lines `chunk` completes (empty ones, the keep-alives, left out). A line never
    /// holds more than [`MAX_FRAME_BYTES`] in memory.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Line> {
        let mut lines = Vec::new();
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            let ends = piece.last() == Some(&b'\n');
            if self.discarding {
                self.discarding = !ends;
                continue;
            }
            self.partial.extend_from_slice(piece);
            if ends {
                let mut line = std::mem::take(&mut self.partial);
                line.pop();
                if !line.is_empty() {
                    lines.push(Line::Whole(line));
                }
            } else if self.partial.len() > MAX_FRAME_BYTES {
                let mut head = std::mem::take(&mut self.partial);
                head.truncate(HEAD_BYTES);
                self.discarding = true;
                lines.push(Line::Oversized { head });
            }
        }
        lines
    }
}

/// The `seq` and `task` a frame's text begins with (`{"seq":N,"task":"…"`, the order frames
/// are written in), read without parsing the rest: a garbled or cut frame still says whose
/// it was.
pub(super) fn frame_head(bytes: &[u8]) -> (Option<u64>, Option<String>) {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(HEAD_BYTES)]);
    let after = |key: &str| text.find(key).map(|at| &text[at + key.len()..]);
    let seq = after("\"seq\":").and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    let task = after("\"task\":\"").and_then(|rest| {
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!id.is_empty()).then_some(id)
    });
    (seq, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{LogLevel, ToolEvent, Usage};

    struct Collect(Mutex<Vec<String>>);
    impl TaskEvents for Collect {
        fn emit(&self, event: TaskEvent) {
            if let TaskEvent::Tool {
                event: ToolEvent::Log { message, .. },
            } = event
            {
                self.0.lock().unwrap().push(message);
            }
        }
    }

    fn log(seq: u64, message: &str) -> Frame {
        Frame {
            seq,
            task: "t_1".into(),
            event: TaskEvent::Tool {
                event: ToolEvent::Log {
                    level: LogLevel::Info,
                    message: message.into(),
                },
            },
        }
    }

    #[test]
    fn frames_replayed_after_a_reconnect_are_handed_on_once() {
        let relay = Relay::new("s_1".into());
        let seen = Arc::new(Collect(Mutex::default()));
        let mut done = relay.register("t_1", seen.clone());
        relay.dispatch(log(1, "a"));
        relay.dispatch(log(2, "b"));
        // The connection broke after frame 2 was read; the sidecar sends from 1 again.
        relay.dispatch(log(1, "a"));
        relay.dispatch(log(2, "b"));
        relay.dispatch(log(3, "c"));
        relay.dispatch(Frame {
            seq: 4,
            task: "t_1".into(),
            event: TaskEvent::Finished {
                finished: TaskFinished {
                    result: Ok("{}".into()),
                    usage: Usage::default(),
                    decision_us: vec![],
                },
            },
        });
        assert_eq!(*seen.0.lock().unwrap(), ["a", "b", "c"]);
        assert!(done.try_recv().unwrap().is_ok());
        assert_eq!(relay.waiting(), 0);
    }

    #[test]
    fn lines_are_split_across_chunks_and_oversized_ones_cut_short() {
        let mut lines = Lines::default();
        assert!(lines.push(b"{\"a\"").is_empty());
        assert_eq!(
            lines.push(b":1}\n\n{}\n{"),
            [
                Line::Whole(b"{\"a\":1}".to_vec()),
                Line::Whole(b"{}".to_vec())
            ]
        );
        let mut huge = Lines::default();
        let mut got = huge.push(br#"{"seq":41,"task":"t_0abc","event":{"kind":"finished","#);
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..=(MAX_FRAME_BYTES >> 20) + 3 {
            got.extend(huge.push(&chunk));
        }
        assert!(
            huge.partial.len() <= MAX_FRAME_BYTES,
            "memory stays bounded"
        );
        got.extend(huge.push(b"xx}\n{\"seq\":42}\n"));
        let [Line::Oversized { head }, Line::Whole(next)] = &got[..] else {
            panic!("{got:?}");
        };
        assert_eq!(frame_head(head), (Some(41), Some("t_0abc".to_owned())));
        assert_eq!(next, br#"{"seq":42}"#, "the stream goes on after it");
    }

    #[test]
    fn a_garbled_frame_still_names_its_seq_and_task() {
        let bytes = br#"{"seq":7,"task":"t_01ff","event":{"kind":"tool","ev"#;
        assert_eq!(frame_head(bytes), (Some(7), Some("t_01ff".to_owned())));
        assert_eq!(frame_head(b"\xff\xfe garbage"), (None, None));
    }
}
