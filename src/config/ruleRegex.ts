import { RE2 } from 're2-wasm';

/** Longest text a `matches` rule looks at; RE2 is linear, this bounds the work per value. */
export const maxMatchedLength = 1_000_000;

/**
 * The regular expression of a `matches` rule, compiled by RE2: linear in the input, so no value in a
 * change (written by anyone who can write the topic) can make a rule backtrack for minutes.
 */
export function compileRuleRegex(pattern: string): { test(text: string): boolean } {
  const re = new RE2(pattern, 'u');
  return { test: (text) => text.length <= maxMatchedLength && re.test(text) };
}

/** Why a pattern cannot be a rule (RE2 has no backreferences or lookaround), or undefined. */
export function regexProblem(pattern: string): string | undefined {
  try {
    compileRuleRegex(pattern);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
