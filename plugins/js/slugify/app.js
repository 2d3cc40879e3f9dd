// slugify: a toolgate tool plugin written in JavaScript.
//
// Tool:
//   make   turn a text into a URL slug ("Grüße, Welt!" -> "grusse-welt")
//
// Built into a WebAssembly component of the `tool` world (wit/tool.wit) by the CLI of
// @bytecodealliance/componentize-js 0.23.0 (the StarlingMonkey engine):
//
//     plugins/build-other-languages.sh --only js     # -> target/other-languages/slugify.wasm
//
// which runs, from a directory holding app.js and a copy of wit/ (the WIT path must be
// relative and inside the working directory):
//
//     componentize-js app.js --wit wit --world-name tool -d stdio random clocks http fetch-event -o slugify.wasm
//
// Not `jco componentize`: in jco 1.35 it fails on any --wit path ("failed to get path
// metadata"); componentize-js's own CLI works and needs no jco. Never `--aot` (it downloads
// a binary at build time).
//
// The world's exports are this module's exported functions `describe` and `call`. For
// `result<string, tool-error>`, returning a string is `ok` and throwing `{ tag, val }` is
// `err`; any other exception (`throw new Error(...)`, a TypeError from a bug) traps the
// component, so `call` catches everything and throws a tool-error instead.
// Imports need the package version in their specifier: 'toolgate:plugin/host@0.1.0'.

import { log, progress } from 'toolgate:plugin/host@0.1.0';

const MAX_LENGTH_DEFAULT = 80;

// StarlingMonkey is built without ICU: no String.prototype.normalize, no Intl, no \p{...}
// in regular expressions. So accents are taken off by this table (each ASCII letter and the
// lowercase Latin letters that decompose to it; generated from Unicode's NFKD of U+00C0-024F
// and U+1E00-1EFF) and by removing combining marks (U+0300-036F).
const ACCENTED = {
  a: 'àáâãäåāăąǎǟǡǻȁȃȧḁạảấầẩẫậắằẳẵặ', b: 'ḃḅḇ', c: 'çćĉċčḉ', d: 'ďḋḍḏḑḓ', dz: 'ǆǳ',
  e: 'èéêëēĕėęěȅȇȩḕḗḙḛḝẹẻẽếềểễệ', f: 'ḟ', g: 'ĝğġģǧǵḡ', h: 'ĥȟḣḥḧḩḫẖ',
  i: 'ìíîïĩīĭįǐȉȋḭḯỉị', ij: 'ĳ', j: 'ĵǰ', k: 'ķǩḱḳḵ', l: 'ĺļľḷḹḻḽ', lj: 'ǉ', m: 'ḿṁṃ',
  n: 'ñńņňǹṅṇṉṋ', nj: 'ǌ', o: 'òóôõöōŏőơǒǫǭȍȏȫȭȯȱṍṏṑṓọỏốồổỗộớờởỡợ', p: 'ṕṗ',
  r: 'ŕŗřȑȓṙṛṝṟ', s: 'śŝşšſșṡṣṥṧṩẛ', t: 'ţťțṫṭṯṱẗ', u: 'ùúûüũūŭůűųưǔǖǘǚǜȕȗṳṵṷṹṻụủứừửữự',
  v: 'ṽṿ', w: 'ŵẁẃẅẇẉẘ', x: 'ẋẍ', y: 'ýÿŷȳẏẙỳỵỷỹ', z: 'źżžẑẓẕ',
};
// Letters that do not decompose, spelled out in ASCII (after lowercasing).
const ASCII = {
  ß: 'ss', æ: 'ae', œ: 'oe', ø: 'o', ł: 'l', đ: 'd', ð: 'd', þ: 'th', ı: 'i', ħ: 'h', ŧ: 't',
  '&': ' and ',
};
for (const [plain, letters] of Object.entries(ACCENTED)) {
  for (const letter of letters) ASCII[letter] = plain;
}
const COMBINING_MARKS = /[\u0300-\u036f]+/g;
// The characters besides letters and digits that a URL path keeps unescaped (RFC 3986).
const SEPARATORS = ['-', '_', '.', '~'];

const TOOLS = [
  {
    name: 'make',
    description:
      'Turn a text into a URL slug: ASCII lowercase letters and digits, accents removed, ' +
      'every other run of characters replaced by the separator.',
    inputSchema: JSON.stringify({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      properties: {
        text: { type: 'string', description: 'The text to make a slug of.' },
        separator: {
          type: 'string',
          minLength: 1,
          maxLength: 1,
          default: '-',
          description: 'The character between words: one of - _ . ~',
        },
        max_length: {
          type: 'integer',
          minimum: 1,
          maximum: 1000,
          default: MAX_LENGTH_DEFAULT,
          description: 'The longest slug to make; it is cut at a word boundary where it can be.',
        },
      },
      required: ['text'],
      additionalProperties: false,
    }),
  },
];

/** A tool-error the host understands; `tag` is a case of the WIT variant. */
class ToolError {
  constructor(tag, val) {
    this.tag = tag;
    this.val = val;
  }
}

const invalid = (message) => new ToolError('invalid-input', message);

function parse(input) {
  let value;
  try {
    value = JSON.parse(input);
  } catch (e) {
    throw invalid(`the input is not JSON: ${e.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid('the input must be a JSON object');
  }
  return value;
}

function make(input) {
  const { text, separator = '-', max_length: maxLength = MAX_LENGTH_DEFAULT } = input;
  if (typeof text !== 'string') throw invalid('`text` must be a string');
  if (typeof separator !== 'string' || [...separator].length !== 1) {
    throw invalid('`separator` must be exactly one character');
  }
  if (!SEPARATORS.includes(separator)) {
    throw invalid(
      `\`separator\` must be one of ${SEPARATORS.join(' ')} (what a URL keeps as it is), not "${separator}"`,
    );
  }
  if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > 1000) {
    throw invalid('`max_length` must be an integer from 1 to 1000');
  }
  log('info', `slugifying ${text.length} UTF-16 units`);

  const lower = text.toLowerCase().replace(COMBINING_MARKS, '');
  progress(1n, 3n, 'lowercased');
  const ascii = [...lower].map((c) => ASCII[c] ?? c).join('');
  progress(2n, 3n, 'accents removed');
  const words = ascii.split(/[^a-z0-9]+/).filter((w) => w.length > 0);
  if (words.length === 0) {
    throw invalid('`text` has no letters or digits to make a slug of');
  }

  let slug = '';
  for (const word of words) {
    const next = slug === '' ? word : `${slug}${separator}${word}`;
    if (next.length > maxLength) {
      // A first word longer than the bound is cut; later words are left out whole.
      if (slug === '') slug = word.slice(0, maxLength);
      log('info', `slug cut to ${slug.length} characters`);
      break;
    }
    slug = next;
  }
  progress(3n, 3n, undefined);
  return { slug };
}

const RUN = { make };

export function describe() {
  return TOOLS;
}

export function call(name, input) {
  const run = RUN[name];
  if (run === undefined || !Object.hasOwn(RUN, name)) {
    throw new ToolError('unknown-tool', name);
  }
  try {
    return JSON.stringify(run(parse(input)));
  } catch (e) {
    if (e instanceof ToolError) throw e;
    // Anything else would trap: report it as the tool's own failure.
    throw new ToolError('failed', `${name} failed: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
}
