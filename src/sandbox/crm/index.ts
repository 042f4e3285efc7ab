/** The CRM sandbox's public surface. */
export {
  createCrmSandbox,
  MAX_JSON_BYTES_DEFAULT,
  MAX_UPLOAD_BYTES_DEFAULT,
  type CrmSandbox,
} from './sandbox.ts';
export {
  crmFaultSchema,
  faultScriptSchema,
  type CrmDelayFault,
  type CrmFault,
  type CrmHangFault,
  type CrmResetFault,
  type CrmStatusFault,
} from './faults.ts';
export { WAIT_TIMEOUT_MS_DEFAULT, type WaitOptions } from './recorder.ts';
export type * from './types.ts';
