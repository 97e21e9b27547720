#!/usr/bin/env python3
"""Generate the wake-protocol malformed-message corpus.

Each case is written as NAME.E<code>.bin, where <code> is the FERRY_WAKE_E_*
value ferry_wake_decode() must return for the file's bytes (0 = valid: the
controls, which prove the layouts below match the codec so that each bad case
fails for the reason its name gives; they are also the fuzzer's seeds).
tests/unit/wake/test_wake_corpus.c checks every file. Layouts: proto/wake.h.

Run from anywhere:  python3 tests/corpus/wake/make_corpus.py
It deletes the *.bin files in its directory and writes them again.
"""
import glob
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

MAGIC = 0x4B415746
VERSION = 1
F_REPLY = 1
CTRL_PAYLOAD = 4072
TABLE_MAX = 512
MAX_PAYLOAD = 8 + TABLE_MAX * (12 + 64)

(HELLO, CHALLENGE, AUTH, AUTH_OK, VM_ADD, VM_DEL, VM_TABLE, ROLE_TAKE,
 ROLE_DROP, VM_RUNNING, WAKE_REQUEST, STATS, STATS_OK, OK, ERROR) = range(1, 16)
REPLIES = {CHALLENGE, AUTH_OK, STATS_OK, OK, ERROR}

(E_OK, E_TRUNCATED, E_BAD_MAGIC, E_VERSION, E_UNKNOWN_TYPE, E_BAD_FLAGS,
 E_TOO_LARGE, E_MALFORMED, E_AUTH_FAILED, E_NOT_AUTH, E_BAD_VM_ID,
 E_BAD_ADDR, E_UNKNOWN_VM, E_EXISTS) = range(14)

REQ = 0x0102030405060708
NONCE = bytes(range(32))
HMAC = bytes(255 - i for i in range(32))
IP = bytes([10, 99, 0, 20])
MAC = bytes([0x02, 0xfe, 0, 0, 0, 0x20])


def hdr(mtype, plen, flags=None, magic=MAGIC, version=VERSION, reserved=0):
    if flags is None:
        flags = F_REPLY if mtype in REPLIES else 0
    return struct.pack('<IBBHQII', magic, version, mtype, flags, REQ, plen, reserved)


def msg(mtype, payload, **kw):
    return hdr(mtype, len(payload), **kw) + payload


def entry(ip=IP, mac=MAC, vid=b'vm-20', id_len=None, reserved=0):
    if id_len is None:
        id_len = len(vid)
    return ip + mac + bytes([id_len, reserved]) + vid


def ref(vid=b'vm-20', id_len=None, reserved=b'\0\0\0'):
    if id_len is None:
        id_len = len(vid)
    return bytes([id_len]) + reserved + vid


def hello(name=b'ferryd@node-1', vmin=1, vmax=1, name_len=None, reserved=0):
    if name_len is None:
        name_len = len(name)
    return struct.pack('<BBBBI', vmin, vmax, name_len, reserved, 0) + name


def wake(reason=1, vid=b'vm-20', attempt=1, sport=40000, dport=7, isn=0x11223344,
         proto=6, reserved=b'\0\0\0', id_len=None):
    if id_len is None:
        id_len = len(vid)
    return (struct.pack('<BBH', reason, id_len, attempt) + bytes([10, 99, 0, 10]) + IP +
            struct.pack('<HHI', sport, dport, isn) + bytes([proto]) + reserved + vid)


def table(entries, count=None, flags=0, reserved=0):
    if count is None:
        count = len(entries)
    return struct.pack('<HHI', count, flags, reserved) + b''.join(entries)


CASES = {
    # ---- valid controls (seeds)
    'ok-hello': (msg(HELLO, hello()), E_OK),
    'ok-challenge': (msg(CHALLENGE, bytes([1, 0, 0, 0]) + NONCE), E_OK),
    'ok-auth': (msg(AUTH, NONCE + HMAC), E_OK),
    'ok-auth-ok': (msg(AUTH_OK, HMAC), E_OK),
    'ok-vm-add': (msg(VM_ADD, entry()), E_OK),
    'ok-vm-del': (msg(VM_DEL, ref()), E_OK),
    'ok-vm-running': (msg(VM_RUNNING, ref()), E_OK),
    'ok-vm-table': (msg(VM_TABLE, table([entry(), entry(ip=bytes([10, 99, 0, 21]), vid=b'vm-21')], flags=1)), E_OK),
    'ok-vm-table-empty': (msg(VM_TABLE, table([])), E_OK),
    'ok-role-take': (msg(ROLE_TAKE, struct.pack('<Q', 7)), E_OK),
    'ok-role-drop': (msg(ROLE_DROP, struct.pack('<Q', 8)), E_OK),
    'ok-wake-syn': (msg(WAKE_REQUEST, wake()), E_OK),
    'ok-wake-arp': (msg(WAKE_REQUEST, wake(reason=2, sport=0, dport=0, isn=0, proto=0)), E_OK),
    'ok-stats': (msg(STATS, b''), E_OK),
    'ok-stats-ok': (msg(STATS_OK, struct.pack('<H', 1) + bytes([9]) + b'arp_reply' + struct.pack('<Q', 3)), E_OK),
    'ok-ok': (msg(OK, struct.pack('<Q', 1)), E_OK),
    'ok-error': (msg(ERROR, struct.pack('<IH', 12, 10) + b'unknown vm'), E_OK),

    # ---- header
    'empty': (b'', E_TRUNCATED),
    'header-short': (msg(STATS, b'')[:23], E_TRUNCATED),
    'bad-magic-page-protocol': (msg(STATS, b'', magic=0x59525246), E_BAD_MAGIC),
    'bad-magic-vmm-protocol': (msg(STATS, b'', magic=0x4D4D5646), E_BAD_MAGIC),
    'version-2': (msg(STATS, b'', version=2), E_VERSION),
    'type-zero': (hdr(0, 0), E_UNKNOWN_TYPE),
    'type-16': (hdr(16, 0), E_UNKNOWN_TYPE),
    'flags-unknown': (msg(STATS, b'', flags=0x8000), E_BAD_FLAGS),
    'flags-reply-on-request': (msg(VM_DEL, ref(), flags=F_REPLY), E_BAD_FLAGS),
    'flags-no-reply-on-ok': (msg(OK, struct.pack('<Q', 1), flags=0), E_BAD_FLAGS),
    'header-reserved': (msg(STATS, b'', reserved=1), E_MALFORMED),
    'ctrl-payload-too-large': (hdr(VM_ADD, CTRL_PAYLOAD + 1), E_TOO_LARGE),
    'table-payload-too-large': (hdr(VM_TABLE, MAX_PAYLOAD + 1), E_TOO_LARGE),
    'lying-payload-len': (hdr(VM_ADD, 40) + entry(), E_TRUNCATED),

    # ---- auth
    'hello-name-empty': (msg(HELLO, hello(name=b'')), E_MALFORMED),
    'hello-name-len-lies': (msg(HELLO, hello(name_len=20)), E_MALFORMED),
    'hello-name-control-char': (msg(HELLO, hello(name=b'ferry\nd')), E_MALFORMED),
    'hello-version-inverted': (msg(HELLO, hello(vmin=2, vmax=1)), E_MALFORMED),
    'challenge-reserved': (msg(CHALLENGE, bytes([1, 0, 1, 0]) + NONCE), E_MALFORMED),
    'auth-short': (msg(AUTH, NONCE), E_MALFORMED),
    'auth-ok-long': (msg(AUTH_OK, HMAC + b'\0'), E_MALFORMED),

    # ---- VM_ADD / VM_DEL / VM_RUNNING
    'vm-add-id-empty': (msg(VM_ADD, entry(vid=b'')), E_BAD_VM_ID),
    'vm-add-id-space': (msg(VM_ADD, entry(vid=b'vm 20')), E_BAD_VM_ID),
    'vm-add-id-too-long': (msg(VM_ADD, entry(vid=b'v' * 65)), E_TOO_LARGE),
    'vm-add-id-len-short': (msg(VM_ADD, entry(id_len=3)), E_MALFORMED),
    'vm-add-id-len-past-end': (msg(VM_ADD, entry(id_len=9)), E_MALFORMED),
    'vm-add-reserved': (msg(VM_ADD, entry(reserved=1)), E_MALFORMED),
    'vm-add-mac-multicast': (msg(VM_ADD, entry(mac=bytes([1, 0, 0x5e, 0, 0, 1]))), E_BAD_ADDR),
    'vm-add-mac-broadcast': (msg(VM_ADD, entry(mac=b'\xff' * 6)), E_BAD_ADDR),
    'vm-add-mac-zero': (msg(VM_ADD, entry(mac=b'\0' * 6)), E_BAD_ADDR),
    'vm-add-ip-zero': (msg(VM_ADD, entry(ip=b'\0\0\0\0')), E_BAD_ADDR),
    'vm-add-ip-broadcast': (msg(VM_ADD, entry(ip=b'\xff' * 4)), E_BAD_ADDR),
    'vm-add-ip-loopback': (msg(VM_ADD, entry(ip=bytes([127, 0, 0, 1]))), E_BAD_ADDR),
    'vm-add-ip-multicast': (msg(VM_ADD, entry(ip=bytes([224, 0, 0, 1]))), E_BAD_ADDR),
    'vm-add-short': (msg(VM_ADD, entry()[:11]), E_MALFORMED),
    'vm-del-reserved': (msg(VM_DEL, ref(reserved=b'\0\1\0')), E_MALFORMED),
    'vm-del-id-nul': (msg(VM_DEL, ref(vid=b'vm\x0020')), E_BAD_VM_ID),
    'vm-running-trailing': (msg(VM_RUNNING, ref() + b'x'), E_MALFORMED),
    'vm-running-short': (msg(VM_RUNNING, b'\x05\0'), E_MALFORMED),

    # ---- VM_TABLE
    'table-count-lies-high': (msg(VM_TABLE, table([entry()], count=2)), E_MALFORMED),
    'table-count-lies-low': (msg(VM_TABLE, table([entry(), entry(ip=bytes([10, 99, 0, 21]), vid=b'b')], count=1)), E_MALFORMED),
    'table-count-above-max': (msg(VM_TABLE, table([], count=TABLE_MAX + 1)), E_TOO_LARGE),
    'table-flags-unknown': (msg(VM_TABLE, table([entry()], flags=2)), E_BAD_FLAGS),
    'table-reserved': (msg(VM_TABLE, table([entry()], reserved=1)), E_MALFORMED),
    'table-duplicate-ip': (msg(VM_TABLE, table([entry(), entry(vid=b'vm-99')])), E_EXISTS),
    'table-duplicate-id': (msg(VM_TABLE, table([entry(), entry(ip=bytes([10, 99, 0, 21]))])), E_EXISTS),
    'table-bad-entry-mac': (msg(VM_TABLE, table([entry(), entry(ip=bytes([10, 99, 0, 21]), vid=b'b', mac=b'\xff' * 6)])), E_BAD_ADDR),
    'table-short': (msg(VM_TABLE, b'\x01\0\0\0'), E_MALFORMED),

    # ---- ROLE
    'role-take-short': (msg(ROLE_TAKE, b'\0' * 7), E_MALFORMED),
    'role-drop-long': (msg(ROLE_DROP, b'\0' * 9), E_MALFORMED),

    # ---- WAKE_REQUEST
    'wake-reason-zero': (msg(WAKE_REQUEST, wake(reason=0)), E_MALFORMED),
    'wake-reason-3': (msg(WAKE_REQUEST, wake(reason=3)), E_MALFORMED),
    'wake-attempt-zero': (msg(WAKE_REQUEST, wake(attempt=0)), E_MALFORMED),
    'wake-syn-not-tcp': (msg(WAKE_REQUEST, wake(proto=17)), E_MALFORMED),
    'wake-syn-port-zero': (msg(WAKE_REQUEST, wake(dport=0)), E_MALFORMED),
    'wake-arp-with-ports': (msg(WAKE_REQUEST, wake(reason=2, proto=0, isn=0)), E_MALFORMED),
    'wake-reserved': (msg(WAKE_REQUEST, wake(reserved=b'\0\0\1')), E_MALFORMED),
    'wake-id-len-lies': (msg(WAKE_REQUEST, wake(id_len=200)), E_TOO_LARGE),
    'wake-id-len-short': (msg(WAKE_REQUEST, wake(id_len=2)), E_MALFORMED),

    # ---- STATS / OK / ERROR
    'stats-with-payload': (msg(STATS, b'\0'), E_MALFORMED),
    'stats-ok-count-above-max': (msg(STATS_OK, struct.pack('<H', 65)), E_TOO_LARGE),
    'stats-ok-name-upper': (msg(STATS_OK, struct.pack('<H', 1) + bytes([3]) + b'ARP' + struct.pack('<Q', 3)), E_MALFORMED),
    'stats-ok-truncated-value': (msg(STATS_OK, struct.pack('<H', 1) + bytes([3]) + b'arp' + b'\0' * 7), E_MALFORMED),
    'ok-short': (msg(OK, b'\0' * 4), E_MALFORMED),
    'error-msg-nul': (msg(ERROR, struct.pack('<IH', 7, 3) + b'a\0b'), E_MALFORMED),
    'error-msg-len-above-max': (msg(ERROR, struct.pack('<IH', 7, 257) + b'a' * 257), E_TOO_LARGE),
    'error-msg-len-lies': (msg(ERROR, struct.pack('<IH', 7, 5) + b'abc'), E_MALFORMED),
}


def main():
    for f in glob.glob(os.path.join(HERE, '*.bin')):
        os.remove(f)
    for name, (data, code) in sorted(CASES.items()):
        with open(os.path.join(HERE, f'{name}.E{code}.bin'), 'wb') as f:
            f.write(data)
    print(f'{len(CASES)} cases written to {HERE}')


if __name__ == '__main__':
    main()
