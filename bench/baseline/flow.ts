/**
 * The original design note's flow (the upload strategy note the project started from; its
 * payload is src/payload/call-data.ts), straight-line, in memory only: start the egress when the
 * call starts; when it ends, StopEgress, poll ListEgress every second until the egress is final,
 * read the whole file, upload it as multipart form-data to `/upload`, then POST the call data
 * JSON to `/call-data`. Each step gets three tries (tries.ts); a call whose step fails three
 * times is lost.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { EgressClient, EgressStatus, EncodedFileOutput, EncodedFileType } from 'livekit-server-sdk';
import { withTries } from './tries.ts';

const LIST_EGRESS_POLL_INTERVAL_MS = 1_000;
/** Gives up on an egress that is not final after this many polls. */
const LIST_EGRESS_POLLS_MAX = 120;
const FINAL_EGRESS_STATUSES = new Set([
  EgressStatus.EGRESS_COMPLETE,
  EgressStatus.EGRESS_FAILED,
  EgressStatus.EGRESS_ABORTED,
  EgressStatus.EGRESS_LIMIT_REACHED,
]);
const TRANSCRIPT_SOURCE = 'livekit-session';
const MS_PER_SECOND = 1_000;

export interface FlowSettings {
  liveKitUrl: string;
  liveKitApiKey: string;
  liveKitApiSecret: string;
  crmBaseUrl: string;
  crmApiKey: string;
}

export interface CallStart {
  roomName: string;
  callerNumber: string;
  startedAt: string;
  config: { campaigns: { _id: string; client: string; voiceAgents: { _id: string }[] }[] };
}

export interface CallEnd {
  roomName: string;
  endedAt: string;
  status: 'completed';
  transcript: {
    role: 'user' | 'assistant';
    content: string;
    timestamp: string;
    transcriptConfidence: number | null;
  }[];
}

interface Session extends CallStart {
  egressId: string | null;
}

export interface Flow {
  /** Starts the room's audio-only egress to a file (three tries); the call goes on without one. */
  start(call: CallStart): Promise<void>;
  /** Runs the end-of-call steps; resolves true when the CRM has the call data. */
  end(call: CallEnd): Promise<boolean>;
}

export function createFlow(settings: FlowSettings): Flow {
  const egress = new EgressClient(settings.liveKitUrl, settings.liveKitApiKey, settings.liveKitApiSecret);
  const sessions = new Map<string, Session>();
  const authorization = `Bearer ${settings.crmApiKey}`;

  async function crmPost(path: string, body: FormData | string, json: boolean): Promise<unknown> {
    const answer = await fetch(`${settings.crmBaseUrl}${path}`, {
      method: 'POST',
      headers: json ? { authorization, 'content-type': 'application/json' } : { authorization },
      body,
    });
    const text = await answer.text();
    if (!answer.ok) throw new Error(`${path} answered ${answer.status}: ${text.slice(0, 200)}`);
    return JSON.parse(text) as unknown;
  }

  async function finalEgress(egressId: string) {
    await withTries(() => egress.stopEgress(egressId)).catch(() => undefined); // it may be ending already
    for (let poll = 0; poll < LIST_EGRESS_POLLS_MAX; poll++) {
      await delay(LIST_EGRESS_POLL_INTERVAL_MS);
      const [info] = await withTries(() => egress.listEgress({ egressId }));
      if (info !== undefined && FINAL_EGRESS_STATUSES.has(info.status)) return info;
    }
    throw new Error(`egress ${egressId} not final after ${LIST_EGRESS_POLLS_MAX} polls`);
  }

  async function uploadRecording(egressId: string) {
    const info = await finalEgress(egressId);
    const file = info.fileResults[0];
    if (info.status !== EgressStatus.EGRESS_COMPLETE || file === undefined) return null;
    const bytes = await readFile(file.location);
    const answer = (await withTries(() => {
      const form = new FormData();
      form.append('file', new Blob([bytes], { type: 'audio/ogg' }), basename(file.filename));
      return crmPost('/upload', form, false);
    })) as { url: string };
    return {
      url: answer.url,
      sizeBytes: bytes.length,
      durationSeconds: Math.round(Number(file.duration) / 1e9),
    };
  }

  return {
    async start(call) {
      const session: Session = { ...call, egressId: null };
      sessions.set(call.roomName, session);
      const output = new EncodedFileOutput({
        fileType: EncodedFileType.OGG,
        filepath: `recordings/${call.roomName}-${Date.now()}.ogg`,
      });
      try {
        const info = await withTries(() =>
          egress.startRoomCompositeEgress(call.roomName, output, { audioOnly: true }),
        );
        session.egressId = info.egressId;
      } catch {
        // No recording: the call data still goes out with the recording fields null.
      }
    },
    async end(call) {
      const session = sessions.get(call.roomName);
      if (session === undefined) return false;
      sessions.delete(call.roomName);
      try {
        const recording = session.egressId === null ? null : await uploadRecording(session.egressId);
        const campaign = session.config.campaigns[0];
        const duration = Math.max(
          0,
          Math.round((Date.parse(call.endedAt) - Date.parse(session.startedAt)) / MS_PER_SECOND),
        );
        const document = {
          campaignId: campaign?._id ?? 'unknown',
          voiceAgentId: campaign?.voiceAgents[0]?._id ?? 'unknown',
          client: campaign?.client ?? 'unknown',
          callDetails: {
            callId: session.roomName,
            direction: 'inbound',
            startTime: session.startedAt,
            endTime: call.endedAt,
            duration,
            status: call.status,
            callerNumber: session.callerNumber,
            recordingUrl: recording?.url ?? null,
            recordingDuration: recording?.durationSeconds ?? null,
            recordingSize: recording?.sizeBytes ?? null,
          },
          caller: { phoneNumber: session.callerNumber },
          transcription: {
            session_id: session.roomName,
            start_time: session.startedAt,
            end_time: call.endedAt,
            duration_seconds: duration,
            total_items: call.transcript.length,
            conversation_items: call.transcript.map((item) => ({
              role: item.role,
              content: item.content,
              timestamp: item.timestamp,
              source: TRANSCRIPT_SOURCE,
              transcript_confidence: item.transcriptConfidence,
            })),
            lead_generated: false,
            metadata: { auto_saved: true },
          },
          lead: {},
        };
        const body = JSON.stringify(document);
        await withTries(() => crmPost('/call-data', body, true));
        return true;
      } catch {
        return false;
      }
    },
  };
}
