/**
 * `/_emulator/...`: a JSON mirror of the control API, so someone running the emulator on its
 * own (see main.ts) can script a call with curl. Unauthenticated on purpose: it is a local
 * development tool. Bodies are validated with zod; protobuf answers use the same protojson as
 * the Twirp API (snake_case names, defaults included).
 *
 *   GET    /_emulator/rooms                               rooms
 *   POST   /_emulator/rooms                               {name, departureTimeoutMs?, emptyTimeoutMs?, metadata?}
 *   GET    /_emulator/rooms/:room                         {room, participants}
 *   POST   /_emulator/rooms/:room/close                   close now
 *   POST   /_emulator/rooms/:room/participants            {identity, kind?, name?, metadata?, attributes?, publishAudio?}
 *   DELETE /_emulator/rooms/:room/participants/:identity  leave
 *   POST   /_emulator/rooms/:room/sip-calls               {callerNumber, trunkNumber?, callerIdentity?, attributes?, agent?}
 *   POST   /_emulator/rooms/:room/hang-up                 {identity?}
 *   GET|PUT|DELETE /_emulator/rooms/:room/behaviour       RoomBehaviour
 *   POST   /_emulator/rooms/:room/release-webhooks        deliver held webhooks
 *   GET    /_emulator/egress?room=&active=true            egresses
 *   GET    /_emulator/egress/:egressId                    one egress
 *   GET    /_emulator/webhooks                            emitted webhook events
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ParticipantInfo_Kind } from '@livekit/protocol';
import { z } from 'zod';
import type { LiveKitEmulator } from './emulator.ts';
import { readBody, writeJson } from './http-io.ts';
import { EMULATED_WEBHOOK_EVENTS } from './room-behaviour.ts';
import type { RoomBehaviour } from './room-behaviour.ts';
import type { ControlHandler } from './http-handler.ts';
import { CONTROL_PREFIX } from './http-handler.ts';
import { RoomClosedError } from './room-registry.ts';
import { TwirpError } from './twirp.ts';
import type { ProtoMessage } from './twirp.ts';

const eventName = z.enum(EMULATED_WEBHOOK_EVENTS);
const eventSelection = z.union([z.literal(true), z.array(eventName)]);
const milliseconds = z.number().int().min(0);

export const roomBehaviourSchema = z.strictObject({
  egressOutcome: z
    .enum([
      'complete',
      'failed',
      'failed_with_file',
      'aborted',
      'limit_reached',
      'stuck_ending',
      'stuck_starting',
    ])
    .optional(),
  failure: z
    .strictObject({
      error: z.string().optional(),
      errorCode: z.number().int().optional(),
      details: z.string().optional(),
    })
    .optional(),
  failStarts: z
    .strictObject({
      error: z.enum(['no_response', 'not_connected']),
      count: z.number().int().min(0).optional(),
    })
    .optional(),
  activateAfterMs: milliseconds.optional(),
  finalizeAfterMs: milliseconds.optional(),
  limitReachedAfterMs: milliseconds.optional(),
  recordingSeconds: z.number().min(0).optional(),
  webhooks: z
    .strictObject({
      drop: eventSelection.optional(),
      duplicate: eventSelection.optional(),
      delayMs: z.union([milliseconds, z.partialRecord(eventName, milliseconds)]).optional(),
      hold: z.array(z.strictObject({ event: eventName, until: eventName })).optional(),
    })
    .optional(),
}) satisfies z.ZodType<RoomBehaviour>;

const roomSchema = z.strictObject({
  name: z.string().min(1),
  departureTimeoutMs: milliseconds.optional(),
  emptyTimeoutMs: milliseconds.optional(),
  maxParticipants: z.number().int().min(0).optional(),
  metadata: z.string().optional(),
});

const kindSchema = z.enum(['STANDARD', 'INGRESS', 'EGRESS', 'SIP', 'AGENT']);
const attributesSchema = z.record(z.string(), z.string());

const participantSchema = z.strictObject({
  identity: z.string().min(1),
  kind: kindSchema.optional(),
  name: z.string().optional(),
  metadata: z.string().optional(),
  attributes: attributesSchema.optional(),
  publishAudio: z.boolean().optional(),
});

const sipCallSchema = z.strictObject({
  callerNumber: z.string().min(1),
  trunkNumber: z.string().optional(),
  callerIdentity: z.string().optional(),
  attributes: attributesSchema.optional(),
  agent: z
    .union([
      z.literal(false),
      z.strictObject({ identity: z.string().optional(), name: z.string().optional() }),
    ])
    .optional(),
});

const hangUpSchema = z.strictObject({ identity: z.string().optional() });

class ControlError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function proto(message: ProtoMessage): unknown {
  return message.toJson({ useProtoFieldName: true, emitDefaultValues: true });
}

async function parseBody<T>(req: IncomingMessage, schema: z.ZodType<T>): Promise<T> {
  const text = (await readBody(req)).toString('utf8');
  let json: unknown;
  try {
    json = text === '' ? {} : JSON.parse(text);
  } catch {
    throw new ControlError(400, 'body is not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ControlError(400, z.prettifyError(parsed.error));
  return parsed.data;
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

export function createControlHandler(emulator: LiveKitEmulator): ControlHandler {
  function requireRoom(name: string) {
    const room = emulator.getRoom(name);
    if (!room) throw new ControlError(404, `room ${name} does not exist`);
    return room;
  }

  async function dispatch(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? 'GET';
    const query = new URL(req.url ?? '/', 'http://emulator').searchParams;
    const parts = path
      .slice(CONTROL_PREFIX.length)
      .split('/')
      .filter((part) => part !== '')
      .map((part) => decodeURIComponent(part));
    const [resource, id, sub, subId] = parts;
    const route = `${method} ${[
      resource,
      id === undefined ? '' : ':id',
      sub ?? '',
      subId === undefined ? '' : ':sub',
    ]
      .filter((part) => part !== '')
      .join('/')}`;

    switch (route) {
      case 'GET rooms':
        return writeJson(res, 200, { rooms: emulator.listRooms().map(proto) });
      case 'POST rooms': {
        const spec = withoutUndefined(await parseBody(req, roomSchema));
        return writeJson(res, 200, { room: proto(emulator.createRoom(spec)) });
      }
      case 'GET rooms/:id':
        return writeJson(res, 200, {
          room: proto(requireRoom(id!)),
          participants: emulator.listParticipants(id!).map(proto),
        });
      case 'POST rooms/:id/close':
        requireRoom(id!);
        emulator.closeRoom({ room: id! });
        return writeJson(res, 200, {});
      case 'POST rooms/:id/participants': {
        const { kind, ...spec } = withoutUndefined(await parseBody(req, participantSchema));
        const participant = emulator.addParticipant({
          room: id!,
          ...spec,
          ...(kind === undefined ? {} : { kind: ParticipantInfo_Kind[kind] }),
        });
        return writeJson(res, 200, { participant: proto(participant) });
      }
      case 'DELETE rooms/:id/participants/:sub': {
        const participant = emulator.removeParticipant({ room: id!, identity: subId! });
        if (!participant) throw new ControlError(404, `participant ${subId} is not in room ${id}`);
        return writeJson(res, 200, { participant: proto(participant) });
      }
      case 'POST rooms/:id/sip-calls': {
        const spec = withoutUndefined(await parseBody(req, sipCallSchema));
        const call = emulator.startSipCall({ room: id!, ...spec });
        return writeJson(res, 200, {
          room: proto(call.room),
          caller: proto(call.caller),
          agent: call.agent ? proto(call.agent) : null,
        });
      }
      case 'POST rooms/:id/hang-up': {
        const { identity } = await parseBody(req, hangUpSchema);
        requireRoom(id!);
        const left = emulator.hangUp({ room: id!, ...(identity === undefined ? {} : { identity }) });
        return writeJson(res, 200, { left: left.map(proto) });
      }
      case 'GET rooms/:id/behaviour':
        return writeJson(res, 200, { behaviour: emulator.getRoomBehaviour(id!) ?? {} });
      case 'PUT rooms/:id/behaviour': {
        const behaviour = await parseBody(req, roomBehaviourSchema);
        emulator.setRoomBehaviour(id!, behaviour);
        return writeJson(res, 200, { behaviour });
      }
      case 'DELETE rooms/:id/behaviour':
        emulator.clearRoomBehaviour(id!);
        return writeJson(res, 200, {});
      case 'POST rooms/:id/release-webhooks':
        emulator.releaseHeldWebhooks(id!);
        return writeJson(res, 200, {});
      case 'GET egress': {
        const room = query.get('room');
        const items = emulator.listEgress({
          ...(room === null ? {} : { roomName: room }),
          active: query.get('active') === 'true',
        });
        return writeJson(res, 200, { items: items.map(proto) });
      }
      case 'GET egress/:id': {
        const info = emulator.getEgress(id!);
        if (!info) throw new ControlError(404, `egress ${id} does not exist`);
        return writeJson(res, 200, { egress: proto(info) });
      }
      case 'GET webhooks':
        return writeJson(res, 200, {
          webhooks: emulator.webhookLog().map(({ id: eventId, name, roomName, body }) => ({
            id: eventId,
            name,
            roomName,
            event: JSON.parse(body) as unknown,
          })),
        });
      default:
        throw new ControlError(404, `no control endpoint ${method} ${path}`);
    }
  }

  return async (req, res, path) => {
    try {
      await dispatch(req, res, path);
    } catch (error) {
      req.resume();
      if (error instanceof ControlError) return writeJson(res, error.status, { error: error.message });
      if (error instanceof RoomClosedError) return writeJson(res, 409, { error: error.message });
      if (error instanceof TwirpError) return writeJson(res, error.status, { error: error.message });
      throw error;
    }
  };
}
