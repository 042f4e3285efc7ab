/**
 * Just enough PromQL reading for the tests that hold the dashboard and the rules to the metrics
 * callsync registers: Grafana's variables replaced by values Prometheus accepts, and the vector
 * selectors (metric name plus matchers) an expression reads.
 *
 * This is a lexer with a little context, not a parser: promtool (or a real Prometheus) does
 * the parsing, and says so when an expression is not valid. What this must get right is which
 * identifiers are metric names: not functions or aggregations (followed by `(`), not keywords,
 * not the label lists of `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, and not
 * anything inside `{…}`, strings, durations or comments.
 */

/** Grafana's built-in and dashboard variables, as a test substitutes them. */
export const GRAFANA_TEST_VARIABLES: Readonly<Record<string, string>> = {
  __rate_interval: '1m',
  __interval: '1m',
  __range: '1h',
  job: '.*',
};

/** Replaces `$name` and `${name}` with the given values; throws on a variable it does not know. */
export function substituteGrafanaVariables(
  expr: string,
  values: Readonly<Record<string, string>> = GRAFANA_TEST_VARIABLES,
): string {
  return expr.replace(
    /\$\{(\w+)\}|\$(\w+)/g,
    (whole, braced: string | undefined, bare: string | undefined) => {
      const name = braced ?? bare ?? '';
      const value = values[name];
      if (value === undefined) throw new Error(`unknown Grafana variable ${whole} in ${expr}`);
      return value;
    },
  );
}

interface Token {
  kind: 'ident' | 'string' | 'number' | 'punct';
  text: string;
  start: number;
  end: number;
}

const NUMBER_OR_DURATION =
  /^(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)/;
const IDENTIFIER = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const char = expr[i] ?? '';
    if (/\s/.test(char)) {
      i += 1;
    } else if (char === '#') {
      while (i < expr.length && expr[i] !== '\n') i += 1;
    } else if (char === '"' || char === "'" || char === '`') {
      const start = i;
      i += 1;
      while (i < expr.length && expr[i] !== char) i += char !== '`' && expr[i] === '\\' ? 2 : 1;
      i += 1;
      tokens.push({ kind: 'string', text: expr.slice(start, i), start, end: i });
    } else {
      const rest = expr.slice(i);
      const number = /^[0-9.]/.test(char) ? NUMBER_OR_DURATION.exec(rest) : null;
      const ident = number ? null : IDENTIFIER.exec(rest);
      const match = number ?? ident;
      const text = match ? match[0] : char;
      tokens.push({
        kind: number ? 'number' : ident ? 'ident' : 'punct',
        text,
        start: i,
        end: i + text.length,
      });
      i += text.length;
    }
  }
  return tokens;
}

/** Keywords followed by a parenthesised label list. */
const LABEL_LIST_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
/** Aggregation operators, which may be followed by `by (…)`/`without (…)` before their `(`. */
const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
/** Other words that are not metric names. */
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'atan2', 'inf', 'nan']);

export interface VectorSelector {
  /** The metric name (empty for a `{__name__=…}` selector). */
  name: string;
  /** The selector as written: `name{matchers}` or `name`. */
  selector: string;
}

/** The vector selectors an expression reads, in order of appearance. */
export function vectorSelectors(expr: string): VectorSelector[] {
  const tokens = tokenize(expr);
  const selectors: VectorSelector[] = [];
  const skipBalanced = (from: number, open: string, close: string): number => {
    let depth = 0;
    for (let j = from; j < tokens.length; j += 1) {
      const text = tokens[j]?.text;
      if (text === open) depth += 1;
      if (text === close) depth -= 1;
      if (depth === 0) return j;
    }
    throw new Error(`unbalanced ${open} in ${expr}`);
  };
  for (let i = 0; i < tokens.length; i += 1) {
    const token = tokens[i];
    if (token === undefined) break;
    const next = tokens[i + 1];
    if (token.kind === 'punct' && token.text === '{') {
      const close = skipBalanced(i, '{', '}');
      selectors.push({ name: '', selector: expr.slice(token.start, tokens[close]?.end) });
      i = close;
      continue;
    }
    if (token.kind !== 'ident') continue;
    const word = token.text.toLowerCase();
    if (LABEL_LIST_KEYWORDS.has(word) && next?.text === '(') {
      i = skipBalanced(i + 1, '(', ')');
      continue;
    }
    if (KEYWORDS.has(word) || next?.text === '(') continue;
    if (AGGREGATIONS.has(word) && (next?.text === 'by' || next?.text === 'without')) continue;
    if (next?.text === '{') {
      const close = skipBalanced(i + 1, '{', '}');
      selectors.push({ name: token.text, selector: expr.slice(token.start, tokens[close]?.end) });
      i = close;
    } else {
      selectors.push({ name: token.text, selector: token.text });
    }
  }
  return selectors;
}

/** The distinct metric names an expression reads. */
export function metricNames(expr: string): string[] {
  return [...new Set(vectorSelectors(expr).map((selector) => selector.name))].filter((name) => name !== '');
}

/** `label_values(metric, label)` (a Grafana variable query) as PromQL: `count by (label) (metric)`. */
export function labelValuesAsPromql(query: string): string {
  const match = /^label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)$/.exec(query.trim());
  if (match?.[1] === undefined || match[2] === undefined)
    throw new Error(`not a label_values() query: ${query}`);
  return `count by (${match[2]}) (${match[1]})`;
}
