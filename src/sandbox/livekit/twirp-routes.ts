/**
 * The Twirp methods the emulator serves, by `<package>.<Service>/<Method>`, each with the
 * grant LiveKit's server requires (see auth.ts) and LiveKit's error messages.
 *
 * Requests are decoded with `@livekit/protocol` like Go's protojson with DiscardUnknown:
 * snake_case or camelCase names, enum names or numbers, int64 as strings or numbers. LiveKit
 * methods the emulator does not model answer `unimplemented` rather than `bad_route`, so a
 * missing feature is not mistaken for a typo.
 */
import type { ClaimGrants } from 'livekit-server-sdk';
import {
  CreateRoomRequest,
  DeleteRoomRequest,
  DeleteRoomResponse,
  DisconnectReason,
  ListEgressRequest,
  ListEgressResponse,
  ListParticipantsRequest,
  ListParticipantsResponse,
  ListRoomsRequest,
  ListRoomsResponse,
  RemoveParticipantResponse,
  RoomCompositeEgressRequest,
  RoomEndReason,
  RoomParticipantIdentity,
  StopEgressRequest,
} from '@livekit/protocol';
import { requireAdminGrant, requireCreateGrant, requireListGrant, requireRecordGrant } from './auth.ts';
import type { EgressManager } from './egress-manager.ts';
import type { EmulatorLogger } from './logger.ts';
import type { RoomRegistry } from './room-registry.ts';
import type { ProtoMessage, TwirpEncoding } from './twirp.ts';
import { TwirpError, TwirpErrors } from './twirp.ts';

/** protobuf-es message classes, as far as decoding needs them. */
interface ProtoMessageType<T> {
  fromJsonString(json: string, options?: { ignoreUnknownFields?: boolean }): T;
  fromBinary(bytes: Uint8Array): T;
}

export interface TwirpRoute {
  handle(input: {
    body: Buffer;
    encoding: TwirpEncoding;
    claims: ClaimGrants | undefined;
  }): Promise<ProtoMessage>;
}

function route<Req>(
  requestType: ProtoMessageType<Req>,
  handler: (request: Req, claims: ClaimGrants | undefined) => ProtoMessage | Promise<ProtoMessage>,
): TwirpRoute {
  return {
    async handle({ body, encoding, claims }) {
      let request: Req;
      try {
        request =
          encoding === 'json'
            ? requestType.fromJsonString(body.toString('utf8'), { ignoreUnknownFields: true })
            : requestType.fromBinary(body);
      } catch {
        throw encoding === 'json' ? TwirpErrors.malformedJson() : TwirpErrors.malformedProtobuf();
      }
      return handler(request, claims);
    },
  };
}

/** LiveKit methods that exist but are not emulated. */
const UNEMULATED_METHODS: Readonly<Record<string, readonly string[]>> = {
  'livekit.Egress': [
    'StartWebEgress',
    'StartParticipantEgress',
    'StartTrackCompositeEgress',
    'StartTrackEgress',
    'StartEgress',
    'UpdateLayout',
    'UpdateStream',
  ],
  'livekit.RoomService': [
    'MutePublishedTrack',
    'UpdateParticipant',
    'UpdateSubscriptions',
    'SendData',
    'UpdateRoomMetadata',
    'ForwardParticipant',
    'MoveParticipant',
    'PerformRpc',
  ],
};

export function unemulatedMethodError(service: string, method: string): TwirpError | undefined {
  if (!UNEMULATED_METHODS[service]?.includes(method)) return undefined;
  return new TwirpError('unimplemented', `${service}/${method} is not implemented by the LiveKit emulator`);
}

const MS_PER_SECOND = 1000;

export function createTwirpRoutes(deps: {
  rooms: RoomRegistry;
  egress: EgressManager;
  logger: EmulatorLogger;
}): ReadonlyMap<string, TwirpRoute> {
  const { rooms, egress, logger } = deps;
  return new Map<string, TwirpRoute>([
    [
      'livekit.Egress/StartRoomCompositeEgress',
      route(RoomCompositeEgressRequest, (request, claims) => {
        requireRecordGrant(claims);
        return egress.start(request);
      }),
    ],
    [
      'livekit.Egress/ListEgress',
      route(ListEgressRequest, (request, claims) => {
        requireRecordGrant(claims);
        const items = egress.list({
          egressId: request.egressId,
          roomName: request.roomName,
          active: request.active,
        });
        return new ListEgressResponse({ items });
      }),
    ],
    [
      'livekit.Egress/StopEgress',
      route(StopEgressRequest, (request, claims) => {
        requireRecordGrant(claims);
        return egress.stop(request.egressId);
      }),
    ],
    [
      'livekit.RoomService/CreateRoom',
      route(CreateRoomRequest, (request, claims) => {
        requireCreateGrant(claims);
        if (request.name === '') throw TwirpErrors.invalidField('name');
        const { room, created } = rooms.create({
          name: request.name,
          ...(request.departureTimeout > 0
            ? { departureTimeoutMs: request.departureTimeout * MS_PER_SECOND }
            : {}),
          ...(request.emptyTimeout > 0 ? { emptyTimeoutMs: request.emptyTimeout * MS_PER_SECOND } : {}),
          maxParticipants: request.maxParticipants,
          metadata: request.metadata,
        });
        // Automatic egress starts only when this call created the room (server roommanager.go).
        const autoEgress = request.egress?.room;
        if (created && autoEgress) {
          autoEgress.roomName = request.name;
          try {
            egress.start(autoEgress);
          } catch (error) {
            logger.warn({ room: request.name, err: error }, 'automatic room egress did not start');
          }
        }
        return room;
      }),
    ],
    [
      'livekit.RoomService/ListRooms',
      route(ListRoomsRequest, (request, claims) => {
        requireListGrant(claims);
        return new ListRoomsResponse({ rooms: rooms.list(request.names) });
      }),
    ],
    [
      'livekit.RoomService/DeleteRoom',
      route(DeleteRoomRequest, (request, claims) => {
        requireCreateGrant(claims);
        if (!rooms.close(request.room, RoomEndReason.ROOM_END_API_DELETE)) throw TwirpErrors.roomNotFound();
        return new DeleteRoomResponse();
      }),
    ],
    [
      'livekit.RoomService/ListParticipants',
      route(ListParticipantsRequest, (request, claims) => {
        requireAdminGrant(claims, request.room);
        return new ListParticipantsResponse({ participants: rooms.participants(request.room) });
      }),
    ],
    [
      'livekit.RoomService/GetParticipant',
      route(RoomParticipantIdentity, (request, claims) => {
        requireAdminGrant(claims, request.room);
        const participant = rooms.participant(request.room, request.identity);
        if (!participant) throw TwirpErrors.participantNotFound();
        return participant;
      }),
    ],
    [
      'livekit.RoomService/RemoveParticipant',
      route(RoomParticipantIdentity, (request, claims) => {
        requireAdminGrant(claims, request.room);
        if (!rooms.participant(request.room, request.identity)) throw TwirpErrors.participantNotFound();
        rooms.leave(request.room, request.identity, { reason: DisconnectReason.PARTICIPANT_REMOVED });
        return new RemoveParticipantResponse();
      }),
    ],
  ]);
}
