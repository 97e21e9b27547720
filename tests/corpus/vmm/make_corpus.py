#!/usr/bin/env python3
"""Generate the VMM-protocol corpus: binary messages and Firecracker handshakes.

Binary messages are written as NAME[.F<n>].E<code>.bin, Firecracker JSON
handshakes as firecracker/NAME[.F<n>].E<code>.json, where <code> is the
FERRY_VMMP_E_* value the decoder must return (0 = valid: the controls, which
prove the layouts below match the codec so that each bad case fails for the
reason its name gives) and <n> the number of file descriptors that "arrived"
with the message (default 0 for .bin, 1 for .json: Firecracker always sends
the uffd). tests/unit/vmm/test_vmm_corpus.c checks every file; the fuzzers
use the files as seeds. Layouts: proto/vmm.h, the table at the top of
proto/vmm.c, docs/vmm-protocol.md.

Run from anywhere:  python3 tests/corpus/vmm/make_corpus.py
It deletes the *.bin and firecracker/*.json files and writes them again.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FC_DIR = os.path.join(HERE, 'firecracker')

MAGIC = 0x4D4D5646          # "FVMM"
PAGE_MAGIC = 0x59525246     # the page protocol's "FRRY"
VERSION = 1
HDR_LEN = 24
F_REPLY = 0x0001
F_SERVER = 0x0002

(REGISTER, REGISTER_OK, FREE_HINT, NOTIFY, STATE_PUT, STATE_GET, STATE_DATA,
 STATS, STATS_OK, UNREGISTER, OK, ERROR, PAUSE, RESUME, DROP_PTES,
 NOTICE) = range(1, 17)
REPLIES = {REGISTER_OK, STATE_DATA, STATS_OK, OK, ERROR}
SERVER_REQS = {PAUSE, RESUME, DROP_PTES, NOTICE}
REG_F_SERVER_REQ, REG_F_INCOMING = 1, 2

(E_OK, E_TRUNCATED, E_BAD_MAGIC, E_VERSION, E_UNKNOWN_TYPE, E_BAD_FLAGS,
 E_TOO_LARGE, E_MALFORMED, E_NOT_ALLOWED, E_BAD_ALIGNMENT, E_PAGE_SIZE,
 E_OVERLAP, E_BAD_VM_ID, E_FD_MISMATCH, E_UNEXPECTED, E_EXISTS,
 E_OUT_OF_RANGE, E_NO_STATE, E_STATE_SEQUENCE, E_BUSY, E_INTERNAL,
 E_SHUTDOWN, E_UNSUPPORTED, E_JSON_SYNTAX, E_JSON_SHAPE, E_MISSING_FIELD,
 E_WRONG_TYPE, E_BAD_NUMBER) = range(28)

MAX_CHUNK = 1 << 20
STATE_MAX = 1 << 30
GPA_LIMIT = 1 << 52
HVA_LIMIT = 1 << 57
K4 = 4096
M2 = 2 << 20
G1 = 1 << 30
MISSING, WP, MINOR = 1, 2, 4

REQ_ID = 0x0102030405060708


def hdr(mtype, payload_len, flags=None, magic=MAGIC, version=VERSION,
        req=REQ_ID, reserved=0):
    if flags is None:
        flags = F_REPLY if mtype in REPLIES else (
            F_SERVER if mtype in SERVER_REQS else 0)
    return struct.pack('<IBBHQII', magic, version, mtype, flags, req,
                       payload_len, reserved)


def msg(mtype, payload, **kw):
    """A message whose header announces exactly the payload given."""
    return hdr(mtype, len(payload), **kw) + payload


# ---------------------------------------------------------------- bodies

def region(gpa=0, size=G1, hva=0x7f0000000000, offset=0, page_size=K4,
           fd_slot=0, modes=MISSING, reserved=0):
    return struct.pack('<QQQQIBBH', gpa, size, hva, offset, page_size,
                       fd_slot, modes, reserved)


def register_body(regions, vm_id=b'vm-42', fd_count=1, flags=0,
                  features=0x8, count=None, id_len=None, migration_id=None):
    if count is None:
        count = len(regions)
    if id_len is None:
        id_len = len(vm_id)
    tail = b'' if migration_id is None else struct.pack('<Q', migration_id)
    return (struct.pack('<HBBIQ', count, id_len, fd_count, flags, features) +
            vm_id + b''.join(regions) + tail)


def ctl_body(flags=0, reserved=0):
    return struct.pack('<II', flags, reserved)


# A small x86 guest: RAM below the 3 GiB hole and RAM above 4 GiB.
LOW = region(gpa=0, size=3 * G1, hva=0x7f0000000000)
HIGH = region(gpa=4 * G1, size=G1, hva=0x7f00c0000000)
LOW_F = region(gpa=0, size=3 * G1, hva=0x7f0000000000, offset=0, fd_slot=1,
               modes=MISSING | WP | MINOR)
HIGH_F = region(gpa=4 * G1, size=G1, hva=0x7f00c0000000, offset=3 * G1,
                fd_slot=1, modes=MISSING | WP | MINOR)


def register_ok_body(handle=7, features=0xf, max_chunk=MAX_CHUNK, reserved=0):
    return struct.pack('<QQII', handle, features, max_chunk, reserved)


def hints_body(ranges, count=None, reserved=0):
    if count is None:
        count = len(ranges)
    return struct.pack('<II', count, reserved) + b''.join(
        struct.pack('<QQ', g, n) for g, n in ranges)


def notify_body(event=1, reserved=0):
    return struct.pack('<II', event, reserved)


def state_body(total, offset, data):
    return struct.pack('<QQ', total, offset) + data


def state_get_body(offset=0, max_len=MAX_CHUNK, reserved=0):
    return struct.pack('<QII', offset, max_len, reserved)


def stat(name, value, name_len=None):
    if name_len is None:
        name_len = len(name)
    return bytes([name_len]) + name + struct.pack('<Q', value)


def stats_ok_body(entries, count=None):
    if count is None:
        count = len(entries)
    return struct.pack('<H', count) + b''.join(entries)


def error_body(text=b'VM vm-42 is already registered', code=E_EXISTS,
               msg_len=None):
    if msg_len is None:
        msg_len = len(text)
    return struct.pack('<IH', code, msg_len) + text


REG_ANON = msg(REGISTER, register_body([LOW, HIGH]))
BLOB = bytes(range(256)) * 4


def binary_cases():
    """(name, fds, expected code, bytes)"""
    c = []

    def add(name, code, data, fds=0):
        c.append((name, fds, code, data))

    # ---- controls: one valid message of every type
    add('valid-register-anon', E_OK, REG_ANON, fds=1)
    add('valid-register-memfd', E_OK,
        msg(REGISTER, register_body([LOW_F, HIGH_F], fd_count=2)), fds=2)
    add('valid-register-2m-pages', E_OK,
        msg(REGISTER, register_body([region(size=4 * G1, page_size=M2,
                                            fd_slot=1, offset=M2 * 8)],
                                    fd_count=2)), fds=2)
    add('valid-register-two-files', E_OK,
        msg(REGISTER, register_body(
            [region(gpa=0, size=G1, hva=0x7f0000000000, fd_slot=1),
             region(gpa=G1, size=G1, hva=0x7f0040000000, fd_slot=2)],
            fd_count=3, vm_id=b'numa.vm_7:node-1')), fds=3)
    add('valid-register-max-id', E_OK,
        msg(REGISTER, register_body([LOW], vm_id=b'v' * 64)), fds=1)
    add('valid-register-ok', E_OK, msg(REGISTER_OK, register_ok_body()))
    add('valid-free-hint', E_OK,
        msg(FREE_HINT, hints_body([(0x100000, 0x200000), (0x300000, K4),
                                   (4 * G1, G1)])))
    add('valid-free-hint-touching', E_OK,
        msg(FREE_HINT, hints_body([(0, K4), (K4, K4)])))
    add('valid-notify-suspend', E_OK, msg(NOTIFY, notify_body(1)))
    add('valid-notify-resume', E_OK, msg(NOTIFY, notify_body(2)))
    add('valid-state-put', E_OK, msg(STATE_PUT, state_body(3 << 20, 1 << 20,
                                                           BLOB)))
    add('valid-state-put-empty-blob', E_OK, msg(STATE_PUT, state_body(0, 0, b'')))
    add('valid-state-get', E_OK, msg(STATE_GET, state_get_body(1 << 20)))
    add('valid-state-data', E_OK, msg(STATE_DATA, state_body(len(BLOB), 0, BLOB)))
    add('valid-state-data-end', E_OK, msg(STATE_DATA, state_body(5, 5, b'')))
    add('valid-stats', E_OK, msg(STATS, b''))
    add('valid-stats-ok', E_OK,
        msg(STATS_OK, stats_ok_body([stat(b'faults', 12), stat(b'zero_pages', 7)])))
    add('valid-unregister', E_OK, msg(UNREGISTER, b''))
    add('valid-ok', E_OK, msg(OK, struct.pack('<Q', 4096)))
    add('valid-error', E_OK, msg(ERROR, error_body()))
    add('valid-trailing-bytes', E_OK, msg(NOTIFY, notify_body()) + b'\xff' * 9)

    # ---- header
    add('empty', E_TRUNCATED, b'')
    add('truncated-header-23', E_TRUNCATED, REG_ANON[:23])
    add('truncated-payload-register', E_TRUNCATED, REG_ANON[:-10], fds=1)
    add('truncated-state-data', E_TRUNCATED,
        msg(STATE_DATA, state_body(len(BLOB), 0, BLOB))[:-1])
    add('bad-magic', E_BAD_MAGIC, msg(NOTIFY, notify_body(), magic=0x4D4D5647))
    add('bad-magic-page-protocol', E_BAD_MAGIC,
        msg(NOTIFY, notify_body(), magic=PAGE_MAGIC))
    add('bad-magic-big-endian', E_BAD_MAGIC,
        msg(NOTIFY, notify_body(), magic=0x46564D4D))
    add('wrong-version-0', E_VERSION, msg(NOTIFY, notify_body(), version=0))
    add('wrong-version-2', E_VERSION, msg(NOTIFY, notify_body(), version=2))
    add('unknown-type-0', E_UNKNOWN_TYPE, msg(0, b''))
    add('unknown-type-17', E_UNKNOWN_TYPE, msg(17, b''))
    add('unknown-type-255', E_UNKNOWN_TYPE, msg(255, b''))
    add('unknown-flag', E_BAD_FLAGS, msg(NOTIFY, notify_body(), flags=0x0004))
    add('server-flag-on-vmm-request', E_BAD_FLAGS, msg(NOTIFY, notify_body(), flags=F_SERVER))
    add('reply-flag-on-request', E_BAD_FLAGS,
        msg(NOTIFY, notify_body(), flags=F_REPLY))
    add('reply-without-flag', E_BAD_FLAGS,
        msg(OK, struct.pack('<Q', 0), flags=0))
    add('header-reserved', E_MALFORMED, msg(NOTIFY, notify_body(), reserved=1))
    add('notify-payload-too-long', E_TOO_LARGE, msg(NOTIFY, notify_body() + b'\0' * 4))
    add('stats-with-payload', E_TOO_LARGE, msg(STATS, b'\0'))
    add('state-put-above-chunk-limit', E_TOO_LARGE,
        hdr(STATE_PUT, 16 + MAX_CHUNK + 1))
    add('register-payload-above-limit', E_TOO_LARGE,
        hdr(REGISTER, 16 + 64 + 64 * 40 + 8 + 1), fds=1)

    # ---- REGISTER
    add('register-short-fixed', E_MALFORMED, msg(REGISTER, b'\0' * 15), fds=1)
    add('register-flags', E_BAD_FLAGS,
        msg(REGISTER, register_body([LOW], flags=4)), fds=1)
    add('register-incoming-without-server-req', E_BAD_FLAGS,
        msg(REGISTER, register_body([LOW], flags=REG_F_INCOMING, migration_id=5)), fds=1)
    add('register-incoming-no-migration-id', E_MALFORMED,
        msg(REGISTER, register_body([LOW], flags=REG_F_SERVER_REQ | REG_F_INCOMING)), fds=1)
    add('register-incoming-migration-id-zero', E_MALFORMED,
        msg(REGISTER, register_body([LOW], flags=REG_F_SERVER_REQ | REG_F_INCOMING,
                                    migration_id=0)), fds=1)
    add('register-migration-id-without-incoming', E_MALFORMED,
        msg(REGISTER, register_body([LOW], flags=REG_F_SERVER_REQ, migration_id=5)), fds=1)
    add('register-lying-region-count', E_MALFORMED,
        msg(REGISTER, register_body([LOW, HIGH], count=3)), fds=1)
    add('register-lying-id-len', E_MALFORMED,
        msg(REGISTER, register_body([LOW], id_len=4)), fds=1)
    add('register-region-count-huge', E_TOO_LARGE,
        msg(REGISTER, register_body([LOW], count=65535)), fds=1)
    add('register-region-count-65', E_TOO_LARGE,
        msg(REGISTER, register_body([LOW], count=65)), fds=1)
    add('register-region-count-zero', E_MALFORMED,
        msg(REGISTER, register_body([], count=0)), fds=1)
    add('register-vm-id-empty', E_BAD_VM_ID,
        msg(REGISTER, register_body([LOW], vm_id=b'')), fds=1)
    add('register-vm-id-nonprintable', E_BAD_VM_ID,
        msg(REGISTER, register_body([LOW], vm_id=b'vm\x01-42')), fds=1)
    add('register-vm-id-space', E_BAD_VM_ID,
        msg(REGISTER, register_body([LOW], vm_id=b'vm 42')), fds=1)
    add('register-vm-id-nul', E_BAD_VM_ID,
        msg(REGISTER, register_body([LOW], vm_id=b'vm\x0042')), fds=1)
    add('register-vm-id-utf8', E_BAD_VM_ID,
        msg(REGISTER, register_body([LOW], vm_id='vm-ä'.encode())), fds=1)
    add('register-vm-id-too-long', E_TOO_LARGE,
        msg(REGISTER, register_body([LOW], vm_id=b'v' * 65)), fds=1)
    add('register-page-size-8192', E_PAGE_SIZE,
        msg(REGISTER, register_body([region(page_size=8192)])), fds=1)
    add('register-page-size-zero', E_PAGE_SIZE,
        msg(REGISTER, register_body([region(page_size=0)])), fds=1)
    add('register-page-size-1g', E_PAGE_SIZE,
        msg(REGISTER, register_body([region(page_size=G1)])), fds=1)
    add('register-size-zero', E_MALFORMED,
        msg(REGISTER, register_body([region(size=0)])), fds=1)
    add('register-modes-zero', E_BAD_FLAGS,
        msg(REGISTER, register_body([region(modes=0)])), fds=1)
    add('register-modes-unknown', E_BAD_FLAGS,
        msg(REGISTER, register_body([region(modes=8 | MISSING)])), fds=1)
    add('register-unaligned-gpa', E_BAD_ALIGNMENT,
        msg(REGISTER, register_body([region(gpa=0x1800)])), fds=1)
    add('register-unaligned-hva', E_BAD_ALIGNMENT,
        msg(REGISTER, register_body([region(hva=0x7f0000000010)])), fds=1)
    add('register-unaligned-size', E_BAD_ALIGNMENT,
        msg(REGISTER, register_body([region(size=G1 + 512)])), fds=1)
    add('register-unaligned-size-2m', E_BAD_ALIGNMENT,
        msg(REGISTER, register_body([region(size=G1 + K4, page_size=M2)])), fds=1)
    add('register-unaligned-offset', E_BAD_ALIGNMENT,
        msg(REGISTER, register_body([region(offset=K4, page_size=M2, fd_slot=1)],
                                    fd_count=2)), fds=2)
    add('register-gpa-beyond-limit', E_TOO_LARGE,
        msg(REGISTER, register_body([region(gpa=GPA_LIMIT - G1 + K4)])), fds=1)
    add('register-hva-beyond-limit', E_TOO_LARGE,
        msg(REGISTER, register_body([region(hva=HVA_LIMIT - K4)])), fds=1)
    add('register-hva-wrap', E_TOO_LARGE,
        msg(REGISTER, register_body([region(hva=(1 << 64) - K4)])), fds=1)
    add('register-offset-wrap', E_TOO_LARGE,
        msg(REGISTER, register_body([region(offset=(1 << 64) - K4, fd_slot=1)],
                                    fd_count=2)), fds=2)
    add('register-minor-anon', E_UNSUPPORTED,
        msg(REGISTER, register_body([region(modes=MISSING | MINOR)])), fds=1)
    add('register-region-reserved', E_MALFORMED,
        msg(REGISTER, register_body([region(reserved=1)])), fds=1)
    add('register-overlap-gpa', E_OVERLAP,
        msg(REGISTER, register_body([LOW, region(gpa=2 * G1, size=G1,
                                                 hva=0x7f00c0000000)])), fds=1)
    add('register-overlap-hva', E_OVERLAP,
        msg(REGISTER, register_body([LOW, region(gpa=4 * G1, size=G1,
                                                 hva=0x7f0080000000)])), fds=1)
    add('register-overlap-same-region-twice', E_OVERLAP,
        msg(REGISTER, register_body([HIGH, HIGH])), fds=1)
    add('register-overlap-file', E_OVERLAP,
        msg(REGISTER, register_body(
            [LOW_F, region(gpa=4 * G1, size=G1, hva=0x7f00c0000000,
                           offset=2 * G1, fd_slot=1)], fd_count=2)), fds=2)
    add('register-fd-count-zero', E_FD_MISMATCH,
        msg(REGISTER, register_body([LOW], fd_count=0)), fds=0)
    add('register-fd-count-18', E_TOO_LARGE,
        msg(REGISTER, register_body([LOW], fd_count=18)), fds=18)
    add('register-fd-slot-out-of-range', E_FD_MISMATCH,
        msg(REGISTER, register_body([region(fd_slot=1)], fd_count=1)), fds=1)
    add('register-memfd-unused', E_FD_MISMATCH,
        msg(REGISTER, register_body([LOW], fd_count=2)), fds=2)
    add('register-fd-mismatch-fewer', E_FD_MISMATCH,
        msg(REGISTER, register_body([LOW_F, HIGH_F], fd_count=2)), fds=1)
    add('register-fd-mismatch-none', E_FD_MISMATCH, REG_ANON, fds=0)
    add('register-fd-mismatch-more', E_FD_MISMATCH,
        msg(REGISTER, register_body([LOW_F, HIGH_F], fd_count=2)), fds=3)

    # ---- REGISTER_OK
    add('register-ok-max-chunk-zero', E_MALFORMED,
        msg(REGISTER_OK, register_ok_body(max_chunk=0)))
    add('register-ok-max-chunk-huge', E_TOO_LARGE,
        msg(REGISTER_OK, register_ok_body(max_chunk=MAX_CHUNK + 1)))
    add('register-ok-reserved', E_MALFORMED,
        msg(REGISTER_OK, register_ok_body(reserved=1)))
    add('register-ok-short', E_MALFORMED, msg(REGISTER_OK, register_ok_body()[:20]))

    # ---- FREE_HINT
    add('free-hint-short', E_MALFORMED, msg(FREE_HINT, b'\1\0\0\0'))
    add('free-hint-count-zero', E_MALFORMED, msg(FREE_HINT, hints_body([])))
    add('free-hint-count-huge', E_TOO_LARGE,
        msg(FREE_HINT, hints_body([(0, K4)], count=0xffffffff)))
    add('free-hint-count-4097', E_TOO_LARGE,
        msg(FREE_HINT, hints_body([(0, K4)], count=4097)))
    add('free-hint-lying-count', E_MALFORMED,
        msg(FREE_HINT, hints_body([(0, K4), (2 * K4, K4)], count=3)))
    add('free-hint-reserved', E_MALFORMED,
        msg(FREE_HINT, hints_body([(0, K4)], reserved=1)))
    add('free-hint-empty-range', E_MALFORMED, msg(FREE_HINT, hints_body([(0, 0)])))
    add('free-hint-unaligned-gpa', E_BAD_ALIGNMENT,
        msg(FREE_HINT, hints_body([(0x1001, K4)])))
    add('free-hint-unaligned-len', E_BAD_ALIGNMENT,
        msg(FREE_HINT, hints_body([(0, 100)])))
    add('free-hint-beyond-limit', E_TOO_LARGE,
        msg(FREE_HINT, hints_body([(GPA_LIMIT, K4)])))
    add('free-hint-wrap', E_TOO_LARGE,
        msg(FREE_HINT, hints_body([((1 << 64) - K4, 2 * K4)])))
    add('free-hint-overlap', E_OVERLAP,
        msg(FREE_HINT, hints_body([(0, 2 * K4), (K4, K4)])))
    add('free-hint-descending', E_OVERLAP,
        msg(FREE_HINT, hints_body([(2 * K4, K4), (0, K4)])))
    add('free-hint-duplicate', E_OVERLAP,
        msg(FREE_HINT, hints_body([(0, K4), (0, K4)])))
    add('free-hint-with-fd', E_FD_MISMATCH,
        msg(FREE_HINT, hints_body([(0, K4)])), fds=1)

    # ---- NOTIFY
    add('notify-event-zero', E_UNSUPPORTED, msg(NOTIFY, notify_body(0)))
    add('notify-event-unknown', E_UNSUPPORTED, msg(NOTIFY, notify_body(3)))
    add('notify-reserved', E_MALFORMED, msg(NOTIFY, notify_body(reserved=1)))
    add('notify-short', E_MALFORMED, msg(NOTIFY, notify_body()[:4]))
    add('notify-with-fd', E_FD_MISMATCH, msg(NOTIFY, notify_body()), fds=1)

    # ---- STATE_PUT / STATE_GET / STATE_DATA
    add('state-put-short', E_MALFORMED, msg(STATE_PUT, b'\0' * 15))
    add('state-put-beyond-total', E_MALFORMED,
        msg(STATE_PUT, state_body(len(BLOB), 1, BLOB)))
    add('state-put-offset-beyond-total', E_MALFORMED,
        msg(STATE_PUT, state_body(10, 11, b'')))
    add('state-put-empty-chunk', E_MALFORMED, msg(STATE_PUT, state_body(10, 0, b'')))
    add('state-put-total-huge', E_TOO_LARGE,
        msg(STATE_PUT, state_body(STATE_MAX + 1, 0, BLOB)))
    add('state-put-total-all-ones', E_TOO_LARGE,
        msg(STATE_PUT, state_body((1 << 64) - 1, (1 << 64) - 2, b'x')))
    add('state-put-with-fd', E_FD_MISMATCH,
        msg(STATE_PUT, state_body(len(BLOB), 0, BLOB)), fds=1)
    add('state-get-short', E_MALFORMED, msg(STATE_GET, state_get_body()[:12]))
    add('state-get-max-len-zero', E_MALFORMED, msg(STATE_GET, state_get_body(max_len=0)))
    add('state-get-max-len-huge', E_TOO_LARGE,
        msg(STATE_GET, state_get_body(max_len=MAX_CHUNK + 1)))
    add('state-get-offset-huge', E_TOO_LARGE,
        msg(STATE_GET, state_get_body(offset=STATE_MAX + 1)))
    add('state-get-reserved', E_MALFORMED, msg(STATE_GET, state_get_body(reserved=1)))
    add('state-data-empty-not-at-end', E_MALFORMED,
        msg(STATE_DATA, state_body(5, 0, b'')))
    add('state-data-beyond-total', E_MALFORMED,
        msg(STATE_DATA, state_body(4, 0, b'12345')))

    # ---- STATS_OK / UNREGISTER / OK / ERROR
    add('stats-ok-lying-count', E_MALFORMED,
        msg(STATS_OK, stats_ok_body([stat(b'faults', 1)], count=2)))
    add('stats-ok-count-huge', E_TOO_LARGE,
        msg(STATS_OK, stats_ok_body([stat(b'faults', 1)], count=65)))
    add('stats-ok-bad-name', E_MALFORMED,
        msg(STATS_OK, stats_ok_body([stat(b'Faults', 1)])))
    add('stats-ok-name-len-lies', E_MALFORMED,
        msg(STATS_OK, stats_ok_body([stat(b'faults', 1, name_len=20)])))
    add('unregister-with-fd', E_FD_MISMATCH, msg(UNREGISTER, b''), fds=1)
    add('ok-short', E_MALFORMED, msg(OK, b'\0' * 4))
    add('error-short', E_MALFORMED, msg(ERROR, b'\0' * 5))
    add('error-nul', E_MALFORMED, msg(ERROR, error_body(text=b'bad\0id')))
    add('error-lying-len', E_MALFORMED, msg(ERROR, error_body(msg_len=3)))
    add('error-msg-len-too-long', E_TOO_LARGE,
        msg(ERROR, error_body(text=b'x' * 250, msg_len=257)))
    # ---- server requests (server -> VMM) and their replies
    add('valid-register-server-req', E_OK,
        msg(REGISTER, register_body([LOW], flags=REG_F_SERVER_REQ)), fds=1)
    add('valid-register-incoming', E_OK,
        msg(REGISTER, register_body([LOW_F], fd_count=2, flags=REG_F_SERVER_REQ | REG_F_INCOMING,
                                    migration_id=0x42)), fds=2)
    add('valid-pause', E_OK, msg(PAUSE, ctl_body(0)))
    add('valid-pause-save-state', E_OK, msg(PAUSE, ctl_body(1)))
    add('valid-resume-load-state', E_OK, msg(RESUME, ctl_body(1)))
    add('valid-drop-ptes', E_OK,
        msg(DROP_PTES, hints_body([(0, K4), (2 * M2, M2), (G1, G1)])))
    add('valid-notice-migrated', E_OK, msg(NOTICE, ctl_body(1)))
    add('valid-server-reply-ok', E_OK, msg(OK, struct.pack('<Q', 8192), flags=F_REPLY | F_SERVER))
    add('valid-server-reply-error', E_OK,
        msg(ERROR, error_body(b'busy', E_BUSY), flags=F_REPLY | F_SERVER))
    add('pause-without-server-flag', E_BAD_FLAGS, msg(PAUSE, ctl_body(0), flags=0))
    add('pause-reply-flag', E_BAD_FLAGS, msg(PAUSE, ctl_body(0), flags=F_REPLY | F_SERVER))
    add('pause-unknown-flag', E_BAD_FLAGS, msg(PAUSE, ctl_body(2)))
    add('pause-reserved', E_MALFORMED, msg(PAUSE, ctl_body(0, reserved=1)))
    add('pause-short', E_MALFORMED, msg(PAUSE, b'\0' * 4))
    add('pause-payload-too-long', E_TOO_LARGE, msg(PAUSE, ctl_body(0) + b'\0'))
    add('pause-with-fd', E_FD_MISMATCH, msg(PAUSE, ctl_body(0)), fds=1)
    add('resume-unknown-flag', E_BAD_FLAGS, msg(RESUME, ctl_body(0x80000000)))
    add('resume-without-server-flag', E_BAD_FLAGS, msg(RESUME, ctl_body(0), flags=0))
    add('drop-ptes-count-zero', E_MALFORMED, msg(DROP_PTES, hints_body([])))
    add('drop-ptes-count-4097', E_TOO_LARGE,
        msg(DROP_PTES, hints_body([(i * K4 * 2, K4) for i in range(4097)])))
    add('drop-ptes-lying-count', E_MALFORMED, msg(DROP_PTES, hints_body([(0, K4)], count=2)))
    add('drop-ptes-unaligned', E_BAD_ALIGNMENT, msg(DROP_PTES, hints_body([(100, K4)])))
    add('drop-ptes-overlap', E_OVERLAP, msg(DROP_PTES, hints_body([(0, 2 * K4), (K4, K4)])))
    add('drop-ptes-descending', E_OVERLAP, msg(DROP_PTES, hints_body([(2 * K4, K4), (0, K4)])))
    add('drop-ptes-empty-range', E_MALFORMED, msg(DROP_PTES, hints_body([(0, 0)])))
    add('drop-ptes-beyond-limit', E_TOO_LARGE, msg(DROP_PTES, hints_body([(GPA_LIMIT, K4)])))
    add('drop-ptes-reserved', E_MALFORMED, msg(DROP_PTES, hints_body([(0, K4)], reserved=1)))
    add('notice-event-unknown', E_UNSUPPORTED, msg(NOTICE, ctl_body(2)))
    add('notice-event-zero', E_UNSUPPORTED, msg(NOTICE, ctl_body(0)))
    add('notice-reserved', E_MALFORMED, msg(NOTICE, ctl_body(1, reserved=7)))
    add('notice-with-fd', E_FD_MISMATCH, msg(NOTICE, ctl_body(1)), fds=1)
    add('server-flag-on-register-ok', E_BAD_FLAGS,
        msg(REGISTER_OK, register_ok_body(), flags=F_REPLY | F_SERVER))
    add('server-flag-on-state-data', E_BAD_FLAGS,
        msg(STATE_DATA, state_body(5, 5, b''), flags=F_REPLY | F_SERVER))
    # a server request newer than the codec: skippable, answered UNSUPPORTED
    add('unknown-server-request-200', E_UNSUPPORTED, msg(200, b'\0' * 40, flags=F_SERVER))
    add('unknown-server-request-as-reply', E_UNKNOWN_TYPE,
        msg(200, b'', flags=F_SERVER | F_REPLY))
    add('unknown-server-request-too-long', E_UNKNOWN_TYPE,
        hdr(200, 16 + MAX_CHUNK + 1, flags=F_SERVER))
    return c


# ---------------------------------------------------------------- Firecracker

def fc_region(hva, size, offset, page=None, kib=None, **extra):
    """A region object with the fields in Firecracker's declaration order."""
    r = {'base_host_virt_addr': hva, 'size': size, 'offset': offset}
    if page is not None:
        r['page_size'] = page
    if kib is not None:
        r['page_size_kib'] = kib
    r.update(extra)
    return r


def fc(regions, indent=None):
    """serde_json::to_string's compact form (or pretty with indent)."""
    if indent is None:
        return json.dumps(regions, separators=(',', ':')).encode()
    return json.dumps(regions, indent=indent).encode()


# Realistic host addresses of two anonymous mappings (x86 guest with 4 GiB:
# 3 GiB below the MMIO hole, 1 GiB above 4 GiB), laid out back to back in the
# snapshot memory file.
HVA0 = 0x7f3a40000000
HVA1 = 0x7f3b00000000
LOW_SZ = 3 * G1
HIGH_SZ = G1


def firecracker_cases():
    """(name, fds, expected code, bytes)"""
    c = []

    def add(name, code, data, fds=1):
        c.append((name, fds, code, data))

    # Firecracker 1.1 - 1.6: three fields, no page size (4 KiB).
    add('fc-v1.1-three-fields', E_OK,
        fc([fc_region(HVA0, LOW_SZ, 0), fc_region(HVA1, HIGH_SZ, LOW_SZ)]))
    # 1.7 - 1.11: "page_size_kib" (which carries bytes).
    add('fc-v1.7-page-size-kib', E_OK,
        fc([fc_region(HVA0, LOW_SZ, 0, kib=K4), fc_region(HVA1, HIGH_SZ, LOW_SZ, kib=K4)]))
    add('fc-v1.7-hugepages-2m', E_OK,
        fc([fc_region(HVA0, LOW_SZ, 0, kib=M2), fc_region(HVA1, HIGH_SZ, LOW_SZ, kib=M2)]))
    # 1.12 and later: "page_size" plus the deprecated "page_size_kib", both bytes.
    add('fc-v1.12-both-fields', E_OK,
        fc([fc_region(HVA0, LOW_SZ, 0, page=K4, kib=K4),
            fc_region(HVA1, HIGH_SZ, LOW_SZ, page=K4, kib=K4)]))
    add('fc-v1.12-hugepages-2m', E_OK,
        fc([fc_region(HVA0, LOW_SZ, 0, page=M2, kib=M2),
            fc_region(HVA1, HIGH_SZ, LOW_SZ, page=M2, kib=M2)]))
    add('fc-v1.12-single-region', E_OK,
        fc([fc_region(0x7f9c00000000, 128 << 20, 0, page=K4, kib=K4)]))
    add('fc-page-size-only', E_OK, fc([fc_region(HVA0, G1, 0, page=K4)]))
    add('fc-pretty-printed', E_OK,
        fc([fc_region(HVA0, LOW_SZ, 0, page=K4, kib=K4)], indent=2) + b'\n')
    add('fc-unknown-field-ignored', E_OK,
        fc([fc_region(HVA0, G1, 0, page=K4, kib=K4, future={'x': [1, 2]})]))
    # Unreleased secret-hiding branch: adds gpa_start and is_guest_memfd.
    add('fc-gpa-start', E_OK,
        fc([fc_region(HVA0, LOW_SZ, 0, gpa_start=0, page=K4, is_guest_memfd=False, kib=K4),
            fc_region(HVA1, HIGH_SZ, LOW_SZ, gpa_start=4 * G1, page=K4,
                      is_guest_memfd=False, kib=K4)]))
    add('fc-is-guest-memfd', E_UNSUPPORTED,
        fc([fc_region(HVA0, G1, 0, gpa_start=0, page=K4, is_guest_memfd=True, kib=K4)]))
    add('fc-is-guest-memfd-not-bool', E_WRONG_TYPE,
        fc([fc_region(HVA0, G1, 0, page=K4, is_guest_memfd=1)]))

    # missing fields
    add('fc-missing-hva', E_MISSING_FIELD, fc([{'size': G1, 'offset': 0, 'page_size': K4}]))
    add('fc-missing-size', E_MISSING_FIELD,
        fc([{'base_host_virt_addr': HVA0, 'offset': 0, 'page_size': K4}]))
    add('fc-missing-offset', E_MISSING_FIELD,
        fc([{'base_host_virt_addr': HVA0, 'size': G1, 'page_size': K4}]))
    add('fc-missing-in-second-region', E_MISSING_FIELD,
        fc([fc_region(HVA0, G1, 0, page=K4), {'base_host_virt_addr': HVA1, 'size': G1}]))
    # wrong types
    add('fc-size-string', E_WRONG_TYPE, fc([fc_region(HVA0, '1073741824', 0)]))
    add('fc-size-float', E_WRONG_TYPE, b'[{"base_host_virt_addr":139888372088832,"size":1073741824.0,"offset":0}]')
    add('fc-size-exponent', E_WRONG_TYPE, b'[{"base_host_virt_addr":139888372088832,"size":1e9,"offset":0}]')
    add('fc-offset-null', E_WRONG_TYPE, fc([fc_region(HVA0, G1, None)]))
    add('fc-hva-bool', E_WRONG_TYPE, fc([fc_region(True, G1, 0)]))
    add('fc-page-size-string', E_WRONG_TYPE, fc([fc_region(HVA0, G1, 0, page='4096')]))
    add('fc-gpa-start-string', E_WRONG_TYPE, fc([fc_region(HVA0, G1, 0, gpa_start='0')]))
    # numbers
    add('fc-size-negative', E_BAD_NUMBER, fc([fc_region(HVA0, -G1, 0)]))
    add('fc-offset-negative', E_BAD_NUMBER, fc([fc_region(HVA0, G1, -K4)]))
    add('fc-hva-above-int64', E_BAD_NUMBER,
        b'[{"base_host_virt_addr":18446744073709551615,"size":4096,"offset":0}]')
    add('fc-size-huge-digits', E_BAD_NUMBER,
        b'[{"base_host_virt_addr":4096,"size":99999999999999999999999999,"offset":0}]')
    add('fc-hva-beyond-address-space', E_BAD_NUMBER, fc([fc_region(1 << 60, G1, 0)]))
    add('fc-file-range-beyond-2-63', E_BAD_NUMBER,
        fc([fc_region(HVA0, G1 + K4, (1 << 63) - G1)]))
    add('fc-size-zero', E_MALFORMED, fc([fc_region(HVA0, 0, 0)]))
    # alignment and page sizes
    add('fc-size-not-page-multiple', E_BAD_ALIGNMENT, fc([fc_region(HVA0, G1 + 100, 0)]))
    add('fc-hva-unaligned', E_BAD_ALIGNMENT, fc([fc_region(HVA0 + 8, G1, 0, page=K4)]))
    add('fc-2m-size-unaligned', E_BAD_ALIGNMENT,
        fc([fc_region(HVA0, 4 * M2 + K4, 0, page=M2, kib=M2)]))
    add('fc-2m-offset-unaligned', E_BAD_ALIGNMENT,
        fc([fc_region(HVA0, 4 * M2, K4, page=M2, kib=M2)]))
    add('fc-page-size-8192', E_PAGE_SIZE, fc([fc_region(HVA0, G1, 0, page=8192, kib=8192)]))
    add('fc-page-size-kib-taken-literally', E_PAGE_SIZE, fc([fc_region(HVA0, G1, 0, kib=4)]))
    add('fc-page-size-zero', E_PAGE_SIZE, fc([fc_region(HVA0, G1, 0, page=0)]))
    add('fc-page-sizes-disagree', E_MALFORMED, fc([fc_region(HVA0, G1, 0, page=K4, kib=M2)]))
    # overlaps
    add('fc-overlap-hva', E_OVERLAP,
        fc([fc_region(HVA0, LOW_SZ, 0), fc_region(HVA0 + G1, HIGH_SZ, LOW_SZ)]))
    add('fc-overlap-offset', E_OVERLAP,
        fc([fc_region(HVA0, LOW_SZ, 0), fc_region(HVA1, HIGH_SZ, G1)]))
    add('fc-overlap-gpa-start', E_OVERLAP,
        fc([fc_region(HVA0, LOW_SZ, 0, gpa_start=0), fc_region(HVA1, HIGH_SZ, LOW_SZ, gpa_start=G1)]))
    add('fc-same-region-twice', E_OVERLAP,
        fc([fc_region(HVA0, G1, 0), fc_region(HVA0, G1, 0)]))
    # shapes and syntax
    add('fc-empty-array', E_JSON_SHAPE, b'[]')
    add('fc-object-top-level', E_JSON_SHAPE, fc(fc_region(HVA0, G1, 0)))
    add('fc-array-of-numbers', E_JSON_SHAPE, b'[1,2,3]')
    add('fc-array-of-arrays', E_JSON_SHAPE, fc([[HVA0, G1, 0]]))
    add('fc-string-top-level', E_JSON_SHAPE, b'"regions"')
    add('fc-too-many-regions', E_TOO_LARGE,
        fc([fc_region(HVA0 + i * G1, G1, i * G1) for i in range(65)]))
    add('fc-empty', E_JSON_SYNTAX, b'')
    add('fc-blank', E_JSON_SYNTAX, b' \n')
    add('fc-truncated', E_JSON_SYNTAX, fc([fc_region(HVA0, G1, 0)])[:-5])
    add('fc-trailing-garbage', E_JSON_SYNTAX, fc([fc_region(HVA0, G1, 0)]) + b'x')
    add('fc-two-arrays', E_JSON_SYNTAX, fc([fc_region(HVA0, G1, 0)]) * 2)
    add('fc-not-json', E_JSON_SYNTAX, b'base_host_virt_addr=1')
    add('fc-nul-byte', E_JSON_SYNTAX, fc([fc_region(HVA0, G1, 0)])[:10] + b'\0' +
        fc([fc_region(HVA0, G1, 0)])[10:])
    add('fc-invalid-utf8', E_JSON_SYNTAX, b'[{"base_host_virt_addr":4096,"size":4096,"offset":0,"\xff":1}]')
    add('fc-duplicate-key', E_MALFORMED,
        b'[{"base_host_virt_addr":4096,"size":4096,"size":8192,"offset":0}]')
    add('fc-too-large', E_TOO_LARGE,
        fc([fc_region(HVA0, G1, 0)]) + b' ' * 65536)
    # descriptors
    add('fc-no-uffd', E_FD_MISMATCH, fc([fc_region(HVA0, G1, 0, page=K4, kib=K4)]), fds=0)
    add('fc-two-fds', E_FD_MISMATCH, fc([fc_region(HVA0, G1, 0, page=K4, kib=K4)]), fds=2)
    return c


def write(directory, cases, ext, default_fds):
    os.makedirs(directory, exist_ok=True)
    for f in os.listdir(directory):
        if f.endswith(ext):
            os.remove(os.path.join(directory, f))
    seen = set()
    for name, fds, code, data in cases:
        assert name not in seen, name
        seen.add(name)
        fpart = '' if fds == default_fds else '.F%d' % fds
        with open(os.path.join(directory, '%s%s.E%d%s' % (name, fpart, code, ext)), 'wb') as f:
            f.write(data)


def main():
    b = binary_cases()
    j = firecracker_cases()
    write(HERE, b, '.bin', 0)
    write(FC_DIR, j, '.json', 1)
    print('%d binary cases (%d malformed), %d Firecracker cases (%d malformed)' % (
        len(b), sum(1 for x in b if x[2]), len(j), sum(1 for x in j if x[2])))


if __name__ == '__main__':
    main()
