/**
 * Each simulated agent's own connection to the contender. An agent job runs in a process of its
 * own (agents-js) and reports over its own kept-alive connection from its first request to its
 * end; one bench process sharing a pool would instead open hundreds of new connections at the
 * burst of ends, which no deployment does, and measure how fast the contender accepts them (libuv
 * takes one new connection per listening socket and loop iteration, src/http/listen.ts) rather
 * than how fast it answers. So: one undici `Client` per call, kept alive for the whole run.
 */
import { Client, type Dispatcher } from 'undici';

/** Longer than a whole run, so an agent's connection lasts from its start to its end. */
const AGENT_KEEP_ALIVE_MS = 10 * 60_000;

export interface AgentConnections {
  /** The call's own connection (opened on its first request). */
  of(roomName: string): Dispatcher;
  close(): Promise<void>;
}

export function agentConnections(url: string): AgentConnections {
  const clients = new Map<string, Client>();
  return {
    of(roomName) {
      let client = clients.get(roomName);
      if (client === undefined) {
        client = new Client(url, {
          keepAliveTimeout: AGENT_KEEP_ALIVE_MS,
          keepAliveMaxTimeout: AGENT_KEEP_ALIVE_MS,
        });
        clients.set(roomName, client);
      }
      return client;
    },
    async close() {
      await Promise.all([...clients.values()].map((client) => client.close()));
      clients.clear();
    },
  };
}
