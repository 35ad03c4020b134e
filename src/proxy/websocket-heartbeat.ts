import type { WebSocket } from 'ws';

/**
 * Pings every socket each `intervalMs`; one that has not answered the previous ping by the next
 * is handed to `onDead`. A peer gone without a FIN (a network partition, a NAT that forgot the
 * flow) is never noticed by TCP, so without this a relayed pair whose far end vanished would stay
 * open, holding its identity's concurrency slot, for good. A socket the relay has paused
 * (backpressure) is not judged while paused: its pong waits unread behind its data.
 * Returns the function that stops the pings.
 */
export function keepAlive(sockets: readonly WebSocket[], intervalMs: number, onDead: (socket: WebSocket) => void): () => void {
  const answered = new Set(sockets);
  for (const socket of sockets) socket.on('pong', () => answered.add(socket));
  const timer = setInterval(() => {
    for (const socket of sockets) {
      if (socket.isPaused) {
        // Judged again from the ping after it resumes.
        answered.add(socket);
      } else if (!answered.has(socket)) {
        onDead(socket);
      } else {
        answered.delete(socket);
        socket.ping();
      }
    }
  }, intervalMs);
  return () => clearInterval(timer);
}
