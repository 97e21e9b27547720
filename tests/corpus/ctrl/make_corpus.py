#!/usr/bin/env python3
"""Generate the control-protocol corpus (proto/ctrl.h).

Each case is written as NAME.E<code>.bin, where <code> is the FERRY_CTRL_E_*
value ferry_ctrl_decode() must return for the file's bytes (0 = valid: the
controls, which prove the layouts below match the codec so that each bad case
fails for the reason its name gives; they are also the fuzzer's seeds).
tests/unit/ctrl/test_ctrl_corpus.c checks every file; the integration test
sends some of them to a live ferryd.

Run from anywhere:  python3 tests/corpus/ctrl/make_corpus.py
It deletes the *.bin files in its directory and writes them again.
"""
import glob
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

MAGIC = 0x4C544346
VERSION = 2
F_REPLY = 1
SMALL = 4096
BIG = 65536

(HELLO, CHALLENGE, AUTH, AUTH_OK, STATUS, STATUS_OK, NODES, NODES_OK, VMS, VMS_OK,
 MIGRATE, PROGRESS, HIBERNATE, RESUME, ABORT, NODE_REGISTER, NODE_REPORT,
 PREPARE_INCOMING, ENDPOINT, VM_PLACED, ROLE, STATS, STATS_OK, OK, ERROR) = range(1, 26)
REPLIES = {CHALLENGE, AUTH_OK, STATUS_OK, NODES_OK, VMS_OK, PROGRESS, ENDPOINT, STATS_OK, OK, ERROR}

(E_OK, E_TRUNCATED, E_BAD_MAGIC, E_VERSION, E_UNKNOWN_TYPE, E_BAD_FLAGS, E_TOO_LARGE,
 E_MALFORMED, E_AUTH_FAILED, E_NOT_AUTH, E_BAD_NAME, E_BAD_ADDR, E_UNKNOWN_VM,
 E_UNKNOWN_NODE, E_EXISTS) = range(15)

REQ = 0x0102030405060708
NONCE = bytes(range(32))
HMAC = bytes(255 - i for i in range(32))


def hdr(mtype, plen, flags=None, magic=MAGIC, version=VERSION, reserved=0):
    if flags is None:
        flags = F_REPLY if mtype in REPLIES else 0
    return struct.pack('<IBBHQII', magic, version, mtype, flags, REQ, plen, reserved)


def msg(mtype, payload, **kw):
    return hdr(mtype, len(payload), **kw) + payload


def s(b, n=None):
    """A str: u8 length then the bytes (n overrides the length byte)."""
    return bytes([len(b) if n is None else n]) + b


def hello(name=b'ferryctl', vmin=2, vmax=2):
    return struct.pack('<BBBBI', vmin, vmax, len(name), 0, 0) + name


def vm(vid=b'vm-1', node=b'h1', state=1, ip=bytes([10, 77, 0, 50]),
       mac=bytes([2, 0x77, 0, 0, 0, 0x50]), reserved=0, gen=1795337073580470000):
    return bytes([state, reserved]) + ip + mac + struct.pack('<Q', gen) + s(vid) + s(node)


def node(name=b'h1', addr=b'10.77.0.1:22001', roles=0xb, state=1, cpus=2,
         total=1 << 30, free=1 << 29, reserved=0):
    return (struct.pack('<IBBHIIIQQIIIII', roles, state, reserved, cpus, 500, 400, 300,
                        total, free, 3, 250, 500, 500, 120) + s(name) + s(addr))


def nodes(entries, count=None, accept=b'h2', coord=b'h1', reserved=b'\0' * 6):
    if count is None:
        count = len(entries)
    return struct.pack('<QH', 7, count) + reserved + s(accept) + s(coord) + b''.join(entries)


def vms(entries, count=None):
    if count is None:
        count = len(entries)
    return struct.pack('<HHI', count, 0, 0) + b''.join(entries)


def migrate(subs=(b'h2', b'h3'), mode=1, count=None, budget=64 << 20, vmid=b'vm-1',
            main=b'h1', source=None, reserved=b'\0' * 6):
    if count is None:
        count = len(subs)
    body = struct.pack('<QBB', budget, mode, count) + reserved + s(vmid) + s(main)
    if source is not None:
        body += s(source)
    return body + b''.join(s(x) for x in subs)


def progress(phase=2, flags=0, vmid=b'vm-1'):
    return struct.pack('<BBHIQQQQQQ', phase, flags, 0, 1, 100, 20, 380, 500, 409600, 75) + s(vmid)


def vm_req(vmid=b'vm-1', node_=b'', reserved=0):
    return struct.pack('<I', reserved) + s(vmid) + s(node_)


def register(name=b'h2', addr=b'10.77.0.2:22001', roles=3):
    return struct.pack('<IHHQ', roles, 2, 0, 1 << 30) + s(name) + s(addr)


def report(name=b'h2', vms_=(), count=None, total=1 << 30, free=1 << 28):
    if count is None:
        count = len(vms_)
    return (struct.pack('<IIIHHQQII', 1500, 1000, 500, 2, count, total, free, 1, 0) + s(name) +
            b''.join(vms_))


def endpoint(port=22100, host=b'10.77.0.1', reserved=b'\0' * 6):
    return struct.pack('<H', port) + reserved + bytes(range(32)) + s(b'vm-1') + s(host)


def role(take=1, nodename=b'h2', reserved=b'\0' * 7):
    return struct.pack('<QB', 9, take) + reserved + s(nodename)


def stats_ok(entries):
    return struct.pack('<H', len(entries)) + b''.join(s(n) + struct.pack('<Q', v) for n, v in entries)


def error(code=17, text=b'boom', n=None):
    return struct.pack('<IH', code, len(text) if n is None else n) + text


def status_ok(children=((1234, 0, 1, b'memsrv'),), count=None, coord=1):
    if count is None:
        count = len(children)
    body = struct.pack('<QQIBBH', 5000, 3, 0xb, coord, count, 0) + s(b'h1') + s(b'h1') + s(b'h2')
    for pid, restarts, st, name in children:
        body += struct.pack('<IIB', pid, restarts, st) + b'\0\0\0' + s(name)
    return body


CASES = {
    # Valid controls, one per type.
    'ok-hello': (msg(HELLO, hello()), E_OK),
    'ok-challenge': (msg(CHALLENGE, bytes([1, 0, 0, 0]) + NONCE), E_OK),
    'ok-auth': (msg(AUTH, NONCE + HMAC), E_OK),
    'ok-auth-ok': (msg(AUTH_OK, HMAC), E_OK),
    'ok-status': (msg(STATUS, b''), E_OK),
    'ok-status-ok': (msg(STATUS_OK, status_ok()), E_OK),
    'ok-nodes': (msg(NODES, b''), E_OK),
    'ok-nodes-ok': (msg(NODES_OK, nodes([node(), node(b'h2', b'10.77.0.2:22001', 7)])), E_OK),
    'ok-nodes-ok-empty': (msg(NODES_OK, nodes([], accept=b'', coord=b'')), E_OK),
    'ok-vms': (msg(VMS, b''), E_OK),
    'ok-vms-ok': (msg(VMS_OK, vms([vm(), vm(b'vm-2', b'', 2)])), E_OK),
    'ok-migrate': (msg(MIGRATE, migrate()), E_OK),
    'ok-progress': (msg(PROGRESS, progress()), E_OK),
    'ok-progress-final': (msg(PROGRESS, progress(5, 1)), E_OK),
    'ok-hibernate': (msg(HIBERNATE, vm_req()), E_OK),
    'ok-resume-on': (msg(RESUME, vm_req(node_=b'h3')), E_OK),
    'ok-abort': (msg(ABORT, vm_req()), E_OK),
    'ok-register': (msg(NODE_REGISTER, register()), E_OK),
    'ok-report': (msg(NODE_REPORT, report(vms_=(vm(node=b'h2'),))), E_OK),
    'ok-prepare': (msg(PREPARE_INCOMING, migrate(source=b'h3')), E_OK),
    'ok-endpoint': (msg(ENDPOINT, endpoint()), E_OK),
    'ok-vm-placed': (msg(VM_PLACED, vm()), E_OK),
    'ok-role': (msg(ROLE, role()), E_OK),
    'ok-stats': (msg(STATS, b''), E_OK),
    'ok-stats-ok': (msg(STATS_OK, stats_ok([(b'reports', 3), (b'auth_failed', 1)])), E_OK),
    'ok-ok': (msg(OK, struct.pack('<Q', 1)), E_OK),
    'ok-error': (msg(ERROR, error()), E_OK),

    # Header.
    'empty': (b'', E_TRUNCATED),
    'header-short': (hdr(STATUS, 0)[:23], E_TRUNCATED),
    'bad-magic-wake-protocol': (msg(STATUS, b'', magic=0x4B415746), E_BAD_MAGIC),
    'bad-magic-http': (b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', E_BAD_MAGIC),
    'version-1': (msg(STATUS, b'', version=1), E_VERSION),
    'version-3': (msg(STATUS, b'', version=3), E_VERSION),
    'version-0': (msg(STATUS, b'', version=0), E_VERSION),
    'type-zero': (hdr(0, 0, flags=0), E_UNKNOWN_TYPE),
    'type-26': (hdr(26, 0, flags=0), E_UNKNOWN_TYPE),
    'flags-unknown': (msg(STATUS, b'', flags=2), E_BAD_FLAGS),
    'flags-reply-on-request': (msg(STATUS, b'', flags=1), E_BAD_FLAGS),
    'flags-no-reply-on-ok': (msg(OK, struct.pack('<Q', 1), flags=0), E_BAD_FLAGS),
    'header-reserved': (msg(STATUS, b'', reserved=1), E_MALFORMED),
    'small-payload-too-large': (hdr(MIGRATE, SMALL + 1), E_TOO_LARGE),
    'list-payload-too-large': (hdr(VMS_OK, BIG + 1), E_TOO_LARGE),
    'payload-len-huge': (hdr(NODES_OK, 0xffffffff), E_TOO_LARGE),
    'lying-payload-len': (hdr(MIGRATE, 200) + migrate(), E_TRUNCATED),

    # Empty-payload requests.
    'status-with-payload': (msg(STATUS, b'\0'), E_MALFORMED),
    'stats-with-payload': (msg(STATS, b'\0' * 8), E_MALFORMED),

    # Handshake.
    'hello-name-empty': (msg(HELLO, hello(b'')), E_MALFORMED),
    'hello-version-inverted': (msg(HELLO, hello(vmin=3, vmax=2)), E_MALFORMED),
    'auth-short': (msg(AUTH, NONCE), E_MALFORMED),
    'auth-ok-long': (msg(AUTH_OK, HMAC + b'\0'), E_MALFORMED),

    # Strings.
    'vm-id-empty': (msg(HIBERNATE, vm_req(vmid=b'')), E_BAD_NAME),
    'vm-id-space': (msg(HIBERNATE, vm_req(vmid=b'vm 1')), E_BAD_NAME),
    'vm-id-slash': (msg(RESUME, vm_req(vmid=b'../etc')), E_BAD_NAME),
    'vm-id-nul': (msg(HIBERNATE, vm_req(vmid=b'vm\x001')), E_BAD_NAME),
    'vm-id-65': (msg(HIBERNATE, vm_req(vmid=b'v' * 65)), E_TOO_LARGE),
    'vm-id-len-lies': (msg(HIBERNATE, struct.pack('<I', 0) + s(b'vm-1', 40)), E_MALFORMED),
    'vm-req-reserved': (msg(ABORT, vm_req(reserved=1)), E_MALFORMED),
    'vm-req-trailing': (msg(ABORT, vm_req() + b'\0'), E_MALFORMED),
    'vm-req-no-node-str': (msg(ABORT, struct.pack('<I', 0) + s(b'vm-1')), E_MALFORMED),
    'register-addr-empty': (msg(NODE_REGISTER, register(addr=b'')), E_BAD_ADDR),
    'register-addr-space': (msg(NODE_REGISTER, register(addr=b'10.77.0.2 22001')), E_BAD_ADDR),
    'register-roles-unknown': (msg(NODE_REGISTER, register(roles=0x10)), E_MALFORMED),
    'register-name-control': (msg(NODE_REGISTER, register(name=b'h\x072')), E_BAD_NAME),

    # Lists.
    'nodes-count-65': (msg(NODES_OK, nodes([node()], count=65)), E_TOO_LARGE),
    'nodes-count-lies': (msg(NODES_OK, nodes([node()], count=2)), E_MALFORMED),
    'nodes-duplicate': (msg(NODES_OK, nodes([node(), node()])), E_EXISTS),
    'nodes-reserved': (msg(NODES_OK, nodes([node()], reserved=b'\0\0\0\0\0\1')), E_MALFORMED),
    'node-state-zero': (msg(NODES_OK, nodes([node(state=0)])), E_MALFORMED),
    'node-state-3': (msg(NODES_OK, nodes([node(state=3)])), E_MALFORMED),
    'node-free-above-total': (msg(NODES_OK, nodes([node(total=100, free=101)])), E_MALFORMED),
    'node-reserved': (msg(NODES_OK, nodes([node(reserved=1)])), E_MALFORMED),
    'vms-count-257': (msg(VMS_OK, vms([vm()], count=257)), E_TOO_LARGE),
    'vms-count-lies': (msg(VMS_OK, vms([vm()], count=3)), E_MALFORMED),
    'vms-duplicate': (msg(VMS_OK, vms([vm(), vm(node=b'h2')])), E_EXISTS),
    'vm-state-7': (msg(VMS_OK, vms([vm(state=7)])), E_MALFORMED),
    'vm-reserved': (msg(VM_PLACED, vm(reserved=9)), E_MALFORMED),
    'vm-node-bad': (msg(VM_PLACED, vm(node=b'h 1')), E_BAD_NAME),
    'report-vms-65': (msg(NODE_REPORT, report(count=65)), E_TOO_LARGE),
    'report-free-above-total': (msg(NODE_REPORT, report(total=1, free=2)), E_MALFORMED),
    'report-vm-count-lies': (msg(NODE_REPORT, report(vms_=(vm(),), count=2)), E_MALFORMED),
    'status-children-9': (msg(STATUS_OK, status_ok(count=9)), E_TOO_LARGE),
    'status-child-state-0': (msg(STATUS_OK, status_ok(((1, 0, 0, b'memsrv'),))), E_MALFORMED),
    'status-coordinator-2': (msg(STATUS_OK, status_ok(coord=2)), E_MALFORMED),

    # Migration.
    'migrate-no-subhosts': (msg(MIGRATE, migrate(subs=())), E_MALFORMED),
    'migrate-subhosts-17': (msg(MIGRATE, migrate(subs=(b'h2',) * 17)), E_TOO_LARGE),
    'migrate-subhost-count-lies': (msg(MIGRATE, migrate(count=3)), E_MALFORMED),
    'migrate-mode-zero': (msg(MIGRATE, migrate(mode=0)), E_MALFORMED),
    'migrate-mode-4': (msg(MIGRATE, migrate(mode=4)), E_MALFORMED),
    'migrate-reserved': (msg(MIGRATE, migrate(reserved=b'\1' + b'\0' * 5)), E_MALFORMED),
    'migrate-main-empty': (msg(MIGRATE, migrate(main=b'')), E_BAD_NAME),
    'prepare-no-source': (msg(PREPARE_INCOMING, migrate(subs=(b'h2',))), E_MALFORMED),
    'progress-phase-8': (msg(PROGRESS, progress(phase=8)), E_MALFORMED),
    'progress-flags-unknown': (msg(PROGRESS, progress(flags=2)), E_BAD_FLAGS),
    'endpoint-host-empty': (msg(ENDPOINT, endpoint(host=b'')), E_BAD_ADDR),
    'endpoint-port-zero': (msg(ENDPOINT, endpoint(port=0)), E_BAD_ADDR),
    'endpoint-reserved': (msg(ENDPOINT, endpoint(reserved=b'\0\0\0\1\0\0')), E_MALFORMED),
    'endpoint-token-short': (msg(ENDPOINT, endpoint()[:20]), E_MALFORMED),
    'role-take-2': (msg(ROLE, role(take=2)), E_MALFORMED),
    'role-reserved': (msg(ROLE, role(reserved=b'\0' * 6 + b'\1')), E_MALFORMED),
    'role-node-empty': (msg(ROLE, role(nodename=b'')), E_BAD_NAME),

    # Replies.
    'ok-short': (msg(OK, b'\1'), E_MALFORMED),
    'error-msg-len-lies': (msg(ERROR, error(n=40)), E_MALFORMED),
    'error-msg-len-above-max': (msg(ERROR, error(text=b'x' * 257)), E_TOO_LARGE),
    'stats-ok-bad-name': (msg(STATS_OK, stats_ok([(b'Bad-Name', 1)])), E_MALFORMED),
}


def main():
    for f in glob.glob(os.path.join(HERE, '*.bin')):
        os.remove(f)
    for name, (data, code) in sorted(CASES.items()):
        with open(os.path.join(HERE, '%s.E%d.bin' % (name, code)), 'wb') as f:
            f.write(data)
    print('%d files in %s' % (len(CASES), HERE))


if __name__ == '__main__':
    main()
