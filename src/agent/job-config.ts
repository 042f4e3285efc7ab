/**
 * The persona config of a call, read from the LiveKit job's metadata (the JSON the dispatch
 * carried: the dispatch rule's or `createDispatch`'s `metadata`).
 *
 * It is validated with the very schema the supervisor applies to `POST /v1/calls`
 * (`personaConfigSchema`), here, before the conversation starts: a job that cannot be reported
 * fails at once with the field named, instead of the supervisor refusing the call after the
 * caller has hung up. Fields besides the ones callsync reads are kept as they are.
 */
import { personaConfigSchema, type PersonaConfig } from '../payload/persona-config.ts';
import { describeIssue } from '../http/schemas.ts';
import { AGENT_ERROR_CODES, CallsyncAgentError } from './errors.ts';

/** Picks the persona config out of the parsed metadata; by default the metadata is the config. */
export type ConfigFromMetadata = (metadata: unknown) => unknown;

export function readPersonaConfig(
  metadata: string | undefined,
  pick: ConfigFromMetadata = (parsed) => parsed,
): PersonaConfig {
  if (metadata === undefined || metadata.trim() === '') {
    throw new CallsyncAgentError(
      AGENT_ERROR_CODES.CONFIG_MISSING,
      'the job has no metadata: dispatch the agent with the persona config (JSON) as the job metadata',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(metadata);
  } catch (error) {
    throw new CallsyncAgentError(
      AGENT_ERROR_CODES.CONFIG_NOT_JSON,
      `the job metadata is not JSON (${error instanceof Error ? error.message : String(error)}); it must be the persona config`,
    );
  }
  const result = personaConfigSchema.safeParse(pick(parsed));
  if (!result.success) {
    const { field, message } = describeIssue(result.error);
    throw new CallsyncAgentError(
      AGENT_ERROR_CODES.CONFIG_INVALID,
      `the job metadata is not a valid persona config: ${message}`,
      { field },
    );
  }
  return result.data;
}
