/**
 * The Twirp wire format and authentication, checked both through the real SDK clients and
 * with raw HTTP where the SDK hides the detail (content types, snake_case bodies, bad routes).
 */
import {
  EncodedFileOutput,
  EncodedFileType,
  ListEgressRequest,
  ListEgressResponse,
  RoomCompositeEgressRequest,
} from '@livekit/protocol';
import type { VideoGrant } from 'livekit-server-sdk';
import { AccessToken, EgressClient, RoomServiceClient } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import type { LiveKitHarness } from '../helpers/livekit-emulator-harness.ts';
import {
  liveKitHarnessPerTest,
  oggOutput,
  serverErrorOf,
  TEST_API_KEY,
  TEST_API_SECRET,
  TEST_CALLER,
} from '../helpers/livekit-emulator-harness.ts';

const harness = liveKitHarnessPerTest();

async function tokenWith(
  grant: VideoGrant,
  options: { apiKey?: string; secret?: string } = {},
): Promise<string> {
  const token = new AccessToken(options.apiKey ?? TEST_API_KEY, options.secret ?? TEST_API_SECRET, {
    ttl: '10m',
  });
  token.addGrant(grant);
  return token.toJwt();
}

async function twirp(
  lk: LiveKitHarness,
  path: string,
  init: { body?: string | Uint8Array; contentType?: string; authorization?: string; method?: string },
) {
  const headers: Record<string, string> = {};
  if (init.contentType !== undefined) headers['Content-Type'] = init.contentType;
  if (init.authorization !== undefined) headers.Authorization = init.authorization;
  const response = await fetch(new URL(path, lk.url), {
    method: init.method ?? 'POST',
    headers,
    ...(init.body === undefined ? {} : { body: init.body }),
  });
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    text: await response.text(),
  };
}

describe('LiveKit emulator: Twirp wire format', () => {
  it('answers snake_case protojson with every default emitted, int64 as strings, enums as names', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'wire', callerNumber: TEST_CALLER });
    const response = await twirp(lk, '/twirp/livekit.Egress/StartRoomCompositeEgress', {
      contentType: 'application/json;charset=UTF-8',
      authorization: `Bearer ${await tokenWith({ roomRecord: true })}`,
      body: JSON.stringify({
        roomName: 'wire',
        audioOnly: true,
        fileOutputs: [{ fileType: 'OGG', filepath: 'x/{room_name}.ogg' }],
      }),
    });
    expect(response.status).toBe(200);
    expect(response.contentType).toBe('application/json');
    const body = JSON.parse(response.text) as Record<string, unknown>;
    expect(body.egress_id).toMatch(/^EG_/);
    expect(body.started_at).toMatch(/^\d{19}$/);
    expect(body).toMatchObject({
      room_name: 'wire',
      status: 'EGRESS_STARTING',
      source_type: 'EGRESS_SOURCE_TYPE_SDK',
      ended_at: '0',
      error: '',
      error_code: 0,
      stream_results: [],
      file_results: [{ filename: 'x/wire.ogg', size: '0', location: '', duration: '0' }],
      file: { filename: 'x/wire.ogg' },
      room_composite: { room_name: 'wire', audio_only: true, layout: '' },
    });
    expect(body).not.toHaveProperty('egressId');
  });

  it('accepts snake_case request bodies and enum numbers, like Go protojson', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'snake', callerNumber: TEST_CALLER });
    const response = await twirp(lk, '/twirp/livekit.Egress/StartRoomCompositeEgress', {
      contentType: 'application/json',
      authorization: `Bearer ${await tokenWith({ roomRecord: true })}`,
      body: JSON.stringify({
        room_name: 'snake',
        audio_only: true,
        file_outputs: [{ file_type: EncodedFileType.OGG, filepath: 'snake.ogg' }],
        some_future_field: 1,
      }),
    });
    expect(response.status).toBe(200);
    expect(JSON.parse(response.text)).toMatchObject({ file_results: [{ filename: 'snake.ogg' }] });
  });

  it('speaks application/protobuf too', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'proto', callerNumber: TEST_CALLER });
    const started = await lk.egress.startRoomCompositeEgress('proto', oggOutput(), { audioOnly: true });
    const response = await fetch(new URL('/twirp/livekit.Egress/ListEgress', lk.url), {
      method: 'POST',
      headers: {
        'Content-Type': 'application/protobuf',
        Authorization: `Bearer ${await tokenWith({ roomRecord: true })}`,
      },
      body: new ListEgressRequest({ egressId: started.egressId }).toBinary(),
    });
    expect(response.headers.get('content-type')).toBe('application/protobuf');
    const decoded = ListEgressResponse.fromBinary(new Uint8Array(await response.arrayBuffer()));
    expect(decoded.items.map((item) => item.egressId)).toEqual([started.egressId]);
  });

  it('serves errors as {"code","msg"} with Content-Type exactly application/json', async () => {
    const lk = await harness();
    const response = await twirp(lk, '/twirp/livekit.Egress/StopEgress', {
      contentType: 'application/json',
      authorization: `Bearer ${await tokenWith({ roomRecord: true })}`,
      body: '{"egressId":"EG_missing"}',
    });
    expect(response.status).toBe(404);
    expect(response.contentType).toBe('application/json');
    expect(JSON.parse(response.text)).toEqual({ code: 'not_found', msg: 'egress does not exist' });
  });

  it('answers bad_route for other methods, unknown paths and content types, with the route in meta', async () => {
    const lk = await harness();
    const authorization = `Bearer ${await tokenWith({ roomRecord: true })}`;
    const get = await twirp(lk, '/twirp/livekit.Egress/ListEgress', { method: 'GET', authorization });
    expect(get.status).toBe(404);
    expect(JSON.parse(get.text)).toEqual({
      code: 'bad_route',
      msg: 'unsupported method "GET" (only POST is allowed)',
      meta: { twirp_invalid_route: 'GET /twirp/livekit.Egress/ListEgress' },
    });
    const unknown = await twirp(lk, '/twirp/livekit.Egress/ListEggs', {
      contentType: 'application/json',
      authorization,
      body: '{}',
    });
    expect(JSON.parse(unknown.text)).toMatchObject({
      code: 'bad_route',
      msg: 'no handler for path "/twirp/livekit.Egress/ListEggs"',
    });
    const text = await twirp(lk, '/twirp/livekit.Egress/ListEgress', {
      contentType: 'text/plain',
      authorization,
      body: '{}',
    });
    expect(text.status).toBe(404);
    expect(JSON.parse(text.text)).toMatchObject({
      code: 'bad_route',
      msg: 'unexpected Content-Type: "text/plain"',
    });
  });

  it('answers unimplemented for LiveKit methods the emulator does not model', async () => {
    const lk = await harness();
    const response = await twirp(lk, '/twirp/livekit.Egress/StartWebEgress', {
      contentType: 'application/json',
      authorization: `Bearer ${await tokenWith({ roomRecord: true })}`,
      body: '{}',
    });
    expect(response.status).toBe(501);
    expect(JSON.parse(response.text)).toMatchObject({ code: 'unimplemented' });
  });

  it('answers 400 malformed for bodies that do not decode', async () => {
    const lk = await harness();
    const authorization = `Bearer ${await tokenWith({ roomRecord: true })}`;
    for (const body of ['{"egressId":', '{"egressId": 42}', '']) {
      const response = await twirp(lk, '/twirp/livekit.Egress/ListEgress', {
        contentType: 'application/json',
        authorization,
        body,
      });
      expect(response.status).toBe(400);
      expect(JSON.parse(response.text)).toEqual({
        code: 'malformed',
        msg: 'the json request could not be decoded',
      });
    }
  });

  it('answers 400 invalid_argument for more than one file output', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'two-files', callerNumber: TEST_CALLER });
    const request = new RoomCompositeEgressRequest({
      roomName: 'two-files',
      audioOnly: true,
      fileOutputs: [
        new EncodedFileOutput({ fileType: EncodedFileType.OGG, filepath: 'a.ogg' }),
        new EncodedFileOutput({ fileType: EncodedFileType.OGG, filepath: 'b.ogg' }),
      ],
    });
    const response = await twirp(lk, '/twirp/livekit.Egress/StartRoomCompositeEgress', {
      contentType: 'application/json',
      authorization: `Bearer ${await tokenWith({ roomRecord: true })}`,
      body: request.toJsonString(),
    });
    expect(response.status).toBe(400);
    expect(JSON.parse(response.text)).toEqual({
      code: 'invalid_argument',
      msg: 'request has missing or invalid field: multiple file outputs',
    });
  });
});

describe('LiveKit emulator: authentication', () => {
  it('rejects a token signed with the wrong secret: 401 with a plain-text body', async () => {
    const lk = await harness();
    const client = new EgressClient(lk.url, TEST_API_KEY, 'not-the-secret-not-the-secret-not-the-secret');
    const error = await serverErrorOf(client.listEgress());
    expect(error.status).toBe(401);
    expect(error.code).toBeUndefined();
    expect(error.message).toMatch(/^invalid token: .+, error: /);

    const raw = await twirp(lk, '/twirp/livekit.Egress/ListEgress', {
      contentType: 'application/json',
      authorization: `Bearer ${await tokenWith({ roomRecord: true }, { secret: 'wrong-wrong-wrong-wrong-wrong-wrong' })}`,
      body: '{}',
    });
    expect(raw.status).toBe(401);
    expect(raw.contentType).toBe('text/plain; charset=utf-8');
  });

  it('rejects unknown API keys and headers that are not Bearer tokens', async () => {
    const lk = await harness();
    const unknownKey = new RoomServiceClient(lk.url, 'APIunknown', TEST_API_SECRET);
    expect(await serverErrorOf(unknownKey.listRooms())).toMatchObject({
      status: 401,
      message: 'invalid API key: APIunknown',
    });
    const basic = await twirp(lk, '/twirp/livekit.RoomService/ListRooms', {
      contentType: 'application/json',
      authorization: 'Basic dXNlcjpwYXNz',
      body: '{}',
    });
    expect(basic).toMatchObject({
      status: 401,
      text: 'invalid authorization header. Must start with Bearer ',
    });
  });

  it('answers 401 unauthenticated "permissions denied" without a token or without the grant', async () => {
    const lk = await harness();
    const anonymous = await twirp(lk, '/twirp/livekit.Egress/ListEgress', {
      contentType: 'application/json',
      body: '{}',
    });
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.text)).toEqual({ code: 'unauthenticated', msg: 'permissions denied' });

    const listOnly = await tokenWith({ roomList: true });
    const egress = new EgressClient(lk.url, undefined, undefined, { token: listOnly });
    expect(await serverErrorOf(egress.listEgress())).toMatchObject({
      status: 401,
      code: 'unauthenticated',
      message: 'permissions denied',
    });
    const rooms = new RoomServiceClient(lk.url, undefined, undefined, { token: listOnly });
    expect(await rooms.listRooms()).toEqual([]);
    expect(await serverErrorOf(rooms.createRoom({ name: 'nope' }))).toMatchObject({
      status: 401,
      code: 'unauthenticated',
    });
  });

  it('lets roomAdmin act on the room named in the token only', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'mine', callerNumber: TEST_CALLER });
    lk.emulator.startSipCall({ room: 'theirs', callerNumber: TEST_CALLER });
    const adminOfMine = new RoomServiceClient(lk.url, undefined, undefined, {
      token: await tokenWith({ roomAdmin: true, room: 'mine' }),
    });
    expect((await adminOfMine.listParticipants('mine')).length).toBe(2);
    expect(await serverErrorOf(adminOfMine.listParticipants('theirs'))).toMatchObject({
      status: 401,
      code: 'unauthenticated',
      message: 'permissions denied',
    });
    // The SDK signs each participant call with roomAdmin for that room.
    expect((await lk.rooms.listParticipants('theirs')).length).toBe(2);
  });
});
