import type { Duplex } from 'node:stream';

/**
 * Watches an upgrade's client socket until the gateway answers the handshake (accepts it or
 * refuses it): a client that leaves meanwhile, by a reset or by a FIN, is let go at once, so its
 * socket closes and nothing is minted, dialled or relayed for it (the upgrade checks
 * `socket.destroyed` after each step that waits). Node stops reading a socket once it hands
 * it over for an upgrade, and the main server's sockets are half-open capable, so without this
 * a FIN went unseen until ws read it after the 101: Coze was dialled, and the relay opened, for
 * nobody. A client that half-closes before its handshake is answered cannot use the WebSocket
 * anyway (RFC 6455 section 4.1: it must wait for the answer before it sends anything).
 *
 * The socket reads into its buffer meanwhile, consuming nothing: ws finds any bytes there.
 * Returns the function that stops the watch; call it before the socket is answered, so that
 * ws (or the refusal) is alone in reading it.
 */
export function watchClientLeaving(socket: Duplex): () => void {
  // At the end of the stream with nothing buffered, read(0) is what makes the socket emit 'end'.
  const onReadable = () => {
    if (socket.readableLength === 0) socket.read(0);
  };
  const onEnd = () => socket.destroy();
  socket.on('readable', onReadable);
  socket.once('end', onEnd);
  return () => {
    socket.off('readable', onReadable);
    socket.off('end', onEnd);
  };
}
