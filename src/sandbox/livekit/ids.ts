/**
 * Identifiers shaped like LiveKit's (`utils.NewGuid`): a type prefix and 12 characters from
 * the shortuuid alphabet, e.g. `EG_MU4QwhXUhWf9`. Code that parses or logs ids sees the same
 * shapes as in production.
 */
import { randomInt } from 'node:crypto';

const GUID_ALPHABET = '23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const GUID_RANDOM_CHARS = 12;

export type GuidPrefix = 'EG_' | 'RM_' | 'PA_' | 'TR_' | 'EV_' | 'SCL_' | 'ST_' | 'AJ_';

export function newGuid(prefix: GuidPrefix): string {
  let id = prefix;
  for (let i = 0; i < GUID_RANDOM_CHARS; i++) id += GUID_ALPHABET[randomInt(GUID_ALPHABET.length)]!;
  return id;
}
