import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { listenError } from '../../../src/cli/listen.js';
import { ConfigError, formatIssue } from '../../../src/config/load.js';

const errno = (code: string) => Object.assign(new Error(`listen ${code}`), { code });
const issueLines = (err: Error) => {
  assert.ok(err instanceof ConfigError, `a configuration error (exit 2): ${err.message}`);
  return err.issues.map(formatIssue);
};

describe('listen failures name the settings (serve said only "admin.port" for an unresolvable admin.host)', () => {
  it('listen-failure-names-both-settings: a host that does not resolve or is not local is the host setting, next to the port', () => {
    assert.deepEqual(issueLines(listenError('admin', 'admin.invalid', 19091, errno('ENOTFOUND'))), [
      'admin.host (ADMIN_HOST): cannot listen on admin.invalid:19091: the host name admin.invalid does not resolve (ENOTFOUND); with admin.port (ADMIN_PORT) 19091',
    ]);
    assert.deepEqual(issueLines(listenError('server', '10.99.99.99', 8080, errno('EADDRNOTAVAIL'))), [
      'server.host (HOST): cannot listen on 10.99.99.99:8080: 10.99.99.99 is not an address of this machine (EADDRNOTAVAIL); with server.port (PORT) 8080',
    ]);
  });

  it('listen-failure-names-both-settings: a busy or privileged port is the port setting, next to the host', () => {
    assert.deepEqual(issueLines(listenError('server', '0.0.0.0', 8080, errno('EADDRINUSE'))), ['server.port (PORT): port 8080 on 0.0.0.0 is already in use; with server.host (HOST) 0.0.0.0']);
    assert.deepEqual(issueLines(listenError('admin', '0.0.0.0', 80, errno('EACCES'))), [
      'admin.port (ADMIN_PORT): not permitted to listen on 0.0.0.0:80 (ports below 1024 need privileges); with admin.host (ADMIN_HOST) 0.0.0.0',
    ]);
  });

  it('another failure is no configuration error (exit 1) but still names both settings', () => {
    const err = listenError('admin', '0.0.0.0', 9091, errno('EMFILE'));
    assert.ok(!(err instanceof ConfigError));
    assert.equal(err.message, 'cannot listen on 0.0.0.0:9091: EMFILE (admin.host (ADMIN_HOST), admin.port (ADMIN_PORT))');
  });
});
