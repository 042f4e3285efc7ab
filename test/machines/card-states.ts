/**
 * The design card's call states in the card's order (README, "How it is built": recording → in
 * conversation → awaiting egress → uploading recording → posting data → done | failed), written
 * out here as the oracle for the machine's card tags.
 */
export const CARD_STATES = [
  'recording',
  'inConversation',
  'awaitingEgress',
  'uploadingRecording',
  'postingData',
  'done',
  'failed',
] as const;
