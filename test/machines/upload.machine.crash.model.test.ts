/**
 * The upload machine's model paths (every family of upload.machine.model.test.ts) with a crash
 * before every step: the last persisted JSON is restored into a fresh actor after some downtime,
 * and the actor must still agree with the model (`runUploadPath`). A file of its own so that it
 * runs beside the plain paths.
 */
import { describe, it } from 'vitest';
import { describeUploadPath, runUploadPath, uploadModel } from './upload.model.ts';

describe('upload machine with a crash before every step', () => {
  for (const family of uploadModel().families) {
    describe(family.family, () => {
      for (const events of family.paths) {
        it(describeUploadPath(events), () => runUploadPath(family, events, true));
      }
    });
  }
});
