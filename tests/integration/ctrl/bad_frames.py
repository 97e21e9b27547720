#!/usr/bin/env python3
"""Send bad frames to a live ferryd and check its answers (used by ctrl_cluster.sh).

  bad_frames.py tcp HOST PORT CORPUS_DIR     (unauthenticated TCP peer)
  bad_frames.py unix PATH CORPUS_DIR         (local ferryctl socket)
  bad_frames.py peer HOST PORT SECRET NAME CASE
                                             (a peer that knows the secret, authenticated as
                                             NAME, oversteps: CASE report-for-other,
                                             role-not-coord, register-unknown)

TCP: every bad input before authentication gets ERROR with the decoder's code,
then the connection is closed. Unix (no handshake there): a bad header gets
ERROR and a close; a whole message with a bad body gets ERROR and the session
goes on (a STATUS on the same connection still gets STATUS_OK).
Prints one PASS/FAIL line per case; exit 1 if any failed.
"""
import hashlib
import hmac
import os
import socket
import struct
import sys

MAGIC = 0x4C544346
VERSION = 2   # FERRY_CTRL_VERSION
T_STATUS, T_STATUS_OK, T_ERROR = 5, 6, 25
failed = 0


def check(ok, what):
    global failed
    print('%s: %s' % ('PASS' if ok else 'FAIL', what))
    if not ok:
        failed += 1


def recv_msg(s):
    """One whole message: (type, payload) or None when the peer closed."""
    buf = b''
    while len(buf) < 24:
        b = s.recv(24 - len(buf))
        if not b:
            return None
        buf += b
    magic, ver, mtype, flags, req, plen, res = struct.unpack('<IBBHQII', buf)
    assert magic == MAGIC, 'reply magic %x' % magic
    pay = b''
    while len(pay) < plen:
        b = s.recv(plen - len(pay))
        if not b:
            return None
        pay += b
    return mtype, pay


def error_code(reply):
    mtype, pay = reply
    if mtype != T_ERROR:
        return None
    return struct.unpack('<I', pay[:4])[0]


def closed(s):
    s.settimeout(2)
    try:
        return s.recv(1) == b''
    except (ConnectionResetError, socket.timeout):
        return False


def corpus(d, name):
    for f in os.listdir(d):
        if f.startswith(name + '.E'):
            return open(os.path.join(d, f), 'rb').read(), int(f.split('.E')[1].split('.')[0])
    raise SystemExit('no corpus file ' + name)


def status_msg():
    return struct.pack('<IBBHQII', MAGIC, VERSION, T_STATUS, 0, 99, 0, 0)


def tcp(host, port, cdir):
    cases = ['bad-magic-http', 'version-3', 'type-26', 'lying-payload-len', 'hello-name-empty',
             'vm-id-space', 'ok-status']
    for name in cases:
        data, code = corpus(cdir, name)
        s = socket.create_connection((host, port), timeout=3)
        s.sendall(data)
        if name == 'lying-payload-len':
            s.shutdown(socket.SHUT_WR)   # never completes: ferryd just sees us go
            check(recv_msg(s) is None, 'tcp %s: closed without a reply' % name)
            continue
        r = recv_msg(s)
        # A valid request before the handshake is NOT_AUTHENTICATED; anything bad gets its own code.
        want = 9 if name == 'ok-status' else code
        got = error_code(r) if r else None
        check(got == want, 'tcp %s: ERROR %s (want %d)' % (name, got, want))
        check(closed(s), 'tcp %s: connection closed' % name)
        s.close()


def unix(path, cdir):
    for name in ['bad-magic-http', 'flags-unknown', 'payload-len-huge']:
        data, code = corpus(cdir, name)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect(path)
        s.sendall(data)
        r = recv_msg(s)
        check(r is not None and error_code(r) == code, 'unix %s: ERROR %s (want %d)' %
              (name, error_code(r) if r else None, code))
        check(closed(s), 'unix %s: connection closed' % name)
        s.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(path)
    for name in ['vm-id-space', 'vm-id-65', 'migrate-mode-4', 'nodes-duplicate', 'ok-progress']:
        data, code = corpus(cdir, name)
        if name == 'ok-progress':
            code = 15   # a valid reply sent as a request: UNEXPECTED
        s.sendall(data)
        r = recv_msg(s)
        check(r is not None and error_code(r) == code, 'unix %s: ERROR %s (want %d), session kept' %
              (name, error_code(r) if r else None, code))
    s.sendall(status_msg())
    r = recv_msg(s)
    check(r is not None and r[0] == T_STATUS_OK, 'unix: STATUS after the bad ones gets STATUS_OK')
    s.close()


T_HELLO, T_CHALLENGE, T_AUTH, T_AUTH_OK = 1, 2, 3, 4
T_NODE_REGISTER, T_NODE_REPORT, T_ROLE = 16, 17, 21
E_UNKNOWN_NODE, E_DENIED = 13, 22


def frame(mtype, payload, req=7):
    return struct.pack('<IBBHQII', MAGIC, VERSION, mtype, 0, req, len(payload), 0) + payload


def sstr(b):
    return bytes([len(b)]) + b


def login(host, port, secret_path, name):
    """The frame.h handshake as peer NAME; both MACs checked (auth.h: key = SHA-256(file))."""
    key = hashlib.sha256(open(secret_path, 'rb').read()[:1024].rstrip(b'\r\n')).digest()
    s = socket.create_connection((host, port), timeout=3)
    s.sendall(frame(T_HELLO, struct.pack('<BBBBI', VERSION, VERSION, len(name), 0, 0) + name))
    mtype, pay = recv_msg(s)
    assert mtype == T_CHALLENGE, 'no CHALLENGE: %d' % mtype
    nonce_s, nonce_c = pay[4:36], os.urandom(32)
    mac = hmac.new(key, b'ferry-ctrl-c\0' + nonce_s + nonce_c + name, hashlib.sha256).digest()
    s.sendall(frame(T_AUTH, nonce_c + mac))
    mtype, pay = recv_msg(s)
    want = hmac.new(key, b'ferry-ctrl-s\0' + nonce_c + nonce_s + name, hashlib.sha256).digest()
    assert mtype == T_AUTH_OK and hmac.compare_digest(pay, want), 'server did not prove the secret'
    return s


T_VMS, T_VMS_OK, T_VM_PLACED, T_OK = 9, 10, 20, 24


def vms(s):
    """VMS -> {id: (state, node, gen)} (proto/ctrl.h: VMS_OK, vm)."""
    s.sendall(frame(T_VMS, b''))
    mtype, pay = recv_msg(s)
    assert mtype == T_VMS_OK, 'VMS answered %d' % mtype
    count, out, off = struct.unpack('<H', pay[:2])[0], {}, 8
    for _ in range(count):
        state, gen = pay[off], struct.unpack('<Q', pay[off + 12:off + 20])[0]
        off += 20
        vid = pay[off + 1:off + 1 + pay[off]]
        off += 1 + pay[off]
        node = pay[off + 1:off + 1 + pay[off]]
        off += 1 + pay[off]
        out[vid.decode()] = (state, node.decode(), gen)
    return out


def placed(s, vid, state, node, gen):
    body = bytes([state, 0]) + bytes(10) + struct.pack('<Q', gen) + sstr(vid.encode()) + sstr(node.encode())
    s.sendall(frame(T_VM_PLACED, body))
    r = recv_msg(s)
    return r is not None and r[0] == T_OK


def stale_placement(s, name, vid):
    """
    A placement from NAME stamped below the one the coordinator holds (a report
    overtaken by the resume's answer) is dropped; one stamped above is taken.
    """
    state, node, gen = vms(s)[vid]
    check(node == name and gen > 0, 'peer %s: %s placed on it, stamped (%d)' % (name, vid, gen))
    check(placed(s, vid, 2, name, gen - 1), 'peer %s: a stale VM_PLACED is answered OK' % name)
    check(vms(s)[vid] == (state, node, gen), 'peer %s: ... and ignored: %s still %d@%s' % (name, vid, state, node))
    check(placed(s, vid, state, name, gen + 1), 'peer %s: a newer VM_PLACED is answered OK' % name)
    check(vms(s)[vid] == (state, node, gen + 1), 'peer %s: ... and taken (stamp %d)' % (name, gen + 1))


def peer(host, port, secret_path, name, case):
    s = login(host, port, secret_path, name.encode())
    if case.startswith('stale-placement:'):
        stale_placement(s, name, case.split(':', 1)[1])
        return
    if case == 'report-for-other':      # NODE_REPORT naming another node
        body = struct.pack('<IIIHHQQII', 100, 100, 100, 2, 0, 1000, 500, 0, 0) + sstr(b'h3')
        s.sendall(frame(T_NODE_REPORT, body))
        want = E_DENIED
    elif case == 'role-not-coord':      # ROLE from a node that is not the coordinator
        s.sendall(frame(T_ROLE, struct.pack('<QB', 99, 1) + b'\0' * 7 + sstr(b'h3')))
        want = E_DENIED
    else:                               # a name the static cluster does not know
        s.sendall(frame(T_NODE_REGISTER, struct.pack('<IHHQ', 1, 2, 0, 1 << 30) + sstr(name.encode()) +
                        sstr(b'10.77.0.9:22001')))
        want = E_UNKNOWN_NODE
    r = recv_msg(s)
    check(r is not None and error_code(r) == want, 'peer %s %s: ERROR %s (want %d)' %
          (name, case, error_code(r) if r else None, want))


if __name__ == '__main__':
    if sys.argv[1] == 'peer':
        peer(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    elif sys.argv[1] == 'tcp':
        tcp(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        unix(sys.argv[2], sys.argv[3])
    sys.exit(1 if failed else 0)
