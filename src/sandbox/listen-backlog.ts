/**
 * How many connections the sandboxes' servers (and the demo's proxy and the bench's baseline)
 * let the kernel queue for accepting. Node's default, 511, drops SYNs when a burst of callsync's
 * requests arrives while the process is busy, and a dropped SYN is resent only after a second;
 * Linux caps the value at `net.core.somaxconn`. callsync itself listens the same way
 * (`HTTP_LISTEN_BACKLOG` in src/http/server.ts).
 */
export const SANDBOX_LISTEN_BACKLOG = 4_096;
