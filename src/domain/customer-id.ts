import { badRequest } from '../errors';

/**
 * Customer ids: the label `X-Watson-Metadata: customer_id=<id>` puts on uploaded examples, and what
 * DELETE /v3/user_data?customer_id=<id> deletes. One rule for both, so every label can be deleted
 * and a DELETE that no label could match says so instead of deleting nothing in silence.
 */

export const MAX_CUSTOMER_ID_LENGTH = 1000;
const HEADER = 'X-Watson-Metadata';
const FORM = `${HEADER}: customer_id=<id>`;

/** What is wrong with a customer id (surrounding spaces already trimmed), as the end of a sentence; undefined when nothing is. */
export function customerIdProblem(id: string): string | undefined {
  if (id === '') return 'is empty';
  if (id.length > MAX_CUSTOMER_ID_LENGTH)
    return `is ${id.length} characters long; at most ${MAX_CUSTOMER_ID_LENGTH} are allowed`;
  const control = /\p{Cc}/u.exec(id); // U+0000–U+001F and U+007F–U+009F
  if (control)
    return `contains a control character (U+${control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')})`;
  const separator = /[;=,]/.exec(id);
  if (separator) return `contains '${separator[0]}', which separates fields and values in ${HEADER}`;
  return undefined;
}

/**
 * The customer id of an upload, from its X-Watson-Metadata header lines (Node's headersDistinct),
 * as Watson read it: semicolon-separated `field=value` pairs of which `customer_id` is the one
 * field, spaces around pairs and a trailing `;` allowed. No header: null (the upload is not
 * labelled). Anything else (the header twice, several values, another field, the field twice, a
 * bad id) is a 400 saying what to send: an upload stored under a label that no DELETE can name
 * would never be deleted. Error messages never repeat the id: it may be personal data.
 */
export function customerIdFromMetadata(lines: string[] | undefined): string | null {
  if (lines === undefined || lines.length === 0) return null;
  const refuse = (what: string) =>
    badRequest(`The ${HEADER} header ${what}. Send it once, as ${FORM}, or leave it out; nothing was stored.`);
  if (lines.length > 1) throw refuse(`was sent ${lines.length} times: one upload is labelled with one customer id`);
  if (lines[0].includes(','))
    throw refuse("holds several values (',' separates them): one upload is labelled with one customer id");
  let customerId: string | undefined;
  for (const pair of lines[0]
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const equals = pair.indexOf('=');
    if (equals < 0) throw refuse(`holds '${pair.slice(0, 40)}', which is not a field=value pair`);
    const field = pair.slice(0, equals).trim();
    if (field !== 'customer_id') {
      throw refuse(`has the field '${field.slice(0, 40)}'; the one field it takes is customer_id, spelt exactly so`);
    }
    if (customerId !== undefined) throw refuse('names customer_id twice: one upload is labelled with one customer id');
    customerId = pair.slice(equals + 1).trim();
    const problem = customerIdProblem(customerId);
    if (problem) throw refuse(`has a customer id that ${problem}`);
  }
  if (customerId === undefined) throw refuse('holds no customer_id');
  return customerId;
}
