/**
 * A TCP port on 127.0.0.1 that nothing listens on right now: the kernel's pick, released at
 * once. For a server started a moment later on a port known in advance (a child process,
 * Prometheus), or for a client that must find nothing listening.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}
