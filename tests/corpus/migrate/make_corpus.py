#!/usr/bin/env python3
"""Generate the migration-protocol malformed-message corpus.

Each case is written as NAME.E<code>.bin, where <code> is the MIG_E_* value
migp_decode() must return for the file's bytes (0 = valid: the controls,
which prove that the layouts below match the codec so that each bad case fails
for the reason its name gives; they also seed the fuzzer).
tests/unit/migrate/test_migrate_corpus.c checks every file. Layouts: proto/migrate.h.

Run from anywhere:  python3 tests/corpus/migrate/make_corpus.py
It deletes the *.bin files in its directory and writes them again.
"""
import glob
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

MAGIC = 0x47494D46
VERSION = 1
F_REPLY = 1
CTRL_PAYLOAD = 4072
MAP_MAX = 2048
MAX_PAYLOAD = 8 + MAP_MAX * 24

(PREPARE, PREPARE_OK, START, STATUS, STATUS_OK, ABORT, OK, ERROR, HELLO,
 CHALLENGE, AUTH, AUTH_OK, LAYOUT, LAYOUT_OK, EXTENTS, PAGE_MAP, ROUND_END,
 DEVSTATE, SWITCHOVER, RESUMED, POSTCOPY_DONE, STATS, STATS_OK, BIND, SUBHOST,
 CREDIT, FETCH) = range(1, 28)
REPLIES = {PREPARE_OK, STATUS_OK, OK, ERROR, CHALLENGE, AUTH_OK, LAYOUT_OK, RESUMED, STATS_OK}

(E_OK, E_TRUNCATED, E_BAD_MAGIC, E_VERSION, E_UNKNOWN_TYPE, E_BAD_FLAGS,
 E_TOO_LARGE, E_MALFORMED, E_AUTH_FAILED, E_NOT_AUTH, E_BAD_VM_ID,
 E_BAD_HOST) = range(12)

REQ = 0x0102030405060708
NONCE = bytes(range(32))
HMAC = bytes(255 - i for i in range(32))
TOKEN = bytes((7 * i + 3) & 0xff for i in range(32))


def hdr(mtype, plen, flags=None, magic=MAGIC, version=VERSION, reserved=0):
    if flags is None:
        flags = F_REPLY if mtype in REPLIES else 0
    return struct.pack('<IBBHQII', magic, version, mtype, flags, REQ, plen, reserved)


def msg(mtype, payload, **kw):
    return hdr(mtype, len(payload), **kw) + payload


def prepare(budget=64 << 20, vid=b'vm-1', subs=((b'10.77.0.3', 23100),), id_len=None, nsubs=None, rsv=bytes(6)):
    if id_len is None:
        id_len = len(vid)
    if nsubs is None:
        nsubs = len(subs)
    body = struct.pack('<QBB', budget, id_len, nsubs) + rsv + vid
    for h, port in subs:
        body += struct.pack('<HB', port, len(h)) + h
    return body


def prepare_ok(port=23001, host=b'10.77.0.2', host_len=None, rsv=0):
    if host_len is None:
        host_len = len(host)
    return struct.pack('<HBB', port, host_len, rsv) + TOKEN + host


def start(mode=1, vid=b'vm-1', host=b'10.77.0.2', port=23001, rsv=0, rsv2=0):
    return struct.pack('<BBBBHH', mode, len(vid), len(host), rsv, port, rsv2) + TOKEN + vid + host


def ref(vid=b'vm-1', id_len=None, rsv=b'\0\0\0'):
    if id_len is None:
        id_len = len(vid)
    return bytes([id_len]) + rsv + vid


def status_ok(phase=2, err=b'', err_len=None, rsv=0):
    if err_len is None:
        err_len = len(err)
    body = struct.pack('<B3xI', phase, 3) + struct.pack('<11Q', *range(100, 111))
    body += struct.pack('<I8xHH', 9, err_len, rsv)
    return body + err


def layout(npages=16384, used=100, mode=1, regions=((0, 64 << 20, 0),), rsv=0, nregions=None):
    if nregions is None:
        nregions = len(regions)
    body = struct.pack('<QQIBBHIIQ', npages, used, 1, mode, nregions, rsv, 0, 0, 0)
    for gpa, size, first in regions:
        body += struct.pack('<QQQ', gpa, size, first)
    return body


def extents(ents=((0, 7, 16 << 20),), count=None, first=0, total=None, rsv=bytes(2)):
    if count is None:
        count = len(ents)
    if total is None:
        total = first + count
    body = struct.pack('<HHH', count, first, total) + rsv
    for sub, eid, length in ents:
        body += struct.pack('<B3xIQ', sub, eid, length) + TOKEN
    return body


def mapent(page=5, gen=1, where=1, sub=0, ext=0, slot=0, rsv=0):
    return struct.pack('<QIBBHII', page, gen, where, sub, rsv, ext, slot)


def page_map(ents=None, count=None, rsv=0):
    if ents is None:
        ents = [mapent(), mapent(6, 1, 2, 1, 3, 4), mapent(7, 2, 3), mapent(8, 2, 4)]
    if count is None:
        count = len(ents)
    return struct.pack('<II', count, rsv) + b''.join(ents)


def devstate(total=10, off=0, data=b'0123456789'):
    return struct.pack('<QQ', total, off) + data


CASES = {
    # valid controls
    'ok-prepare': (msg(PREPARE, prepare()), E_OK),
    'ok-prepare-two-subs': (msg(PREPARE, prepare(subs=((b'sub1', 23100), (b'10.77.0.4', 23101)))), E_OK),
    'ok-prepare-no-subs': (msg(PREPARE, prepare(subs=())), E_OK),
    'ok-prepare-ok': (msg(PREPARE_OK, prepare_ok()), E_OK),
    'ok-start': (msg(START, start()), E_OK),
    'ok-start-planned': (msg(START, start(mode=3)), E_OK),
    'ok-status': (msg(STATUS, ref()), E_OK),
    'ok-abort': (msg(ABORT, ref()), E_OK),
    'ok-status-ok': (msg(STATUS_OK, status_ok(err=b'sub-host 10.77.0.3 lost')), E_OK),
    'ok-ok': (msg(OK, struct.pack('<Q', 5)), E_OK),
    'ok-error': (msg(ERROR, struct.pack('<IH', 12, 5) + b'no vm'), E_OK),
    'ok-hello': (msg(HELLO, struct.pack('<BBBBI', 1, 1, 4, 0, 0) + b'vm-1'), E_OK),
    'ok-challenge': (msg(CHALLENGE, struct.pack('<B3x', 1) + NONCE), E_OK),
    'ok-auth': (msg(AUTH, NONCE + HMAC), E_OK),
    'ok-auth-ok': (msg(AUTH_OK, HMAC + struct.pack('<H6x', 23002) + TOKEN), E_OK),
    'ok-layout': (msg(LAYOUT, layout()), E_OK),
    'ok-layout-two-regions': (msg(LAYOUT, layout(npages=3, used=2, regions=((0, 4096, 0), (1 << 32, 8192, 1)))), E_OK),
    'ok-layout-ok': (msg(LAYOUT_OK, struct.pack('<IIQQ', 9, 16384, 0, 4096)), E_OK),
    'ok-extents-second-message': (msg(EXTENTS, extents(first=64, total=100)), E_OK),
    'ok-credit': (msg(CREDIT, struct.pack('<II', 256, 0)), E_OK),
    'ok-fetch': (msg(FETCH, struct.pack('<II', 2, 30) + struct.pack('<QQ', 5, 1 << 40)), E_OK),
    'ok-page-map-dest-slot': (msg(PAGE_MAP, page_map([mapent(slot=16383)])), E_OK),
    'ok-extents': (msg(EXTENTS, extents(((0, 7, 16 << 20), (1, 8, 4096)))), E_OK),
    'ok-page-map': (msg(PAGE_MAP, page_map()), E_OK),
    'ok-round-end': (msg(ROUND_END, struct.pack('<IIQ', 2, 0, 77)), E_OK),
    'ok-devstate': (msg(DEVSTATE, devstate()), E_OK),
    'ok-devstate-empty': (msg(DEVSTATE, devstate(0, 0, b'')), E_OK),
    'ok-switchover': (msg(SWITCHOVER, struct.pack('<IIQ', 4, 0, 12)), E_OK),
    'ok-resumed': (msg(RESUMED, struct.pack('<Q', 1000)), E_OK),
    'ok-postcopy-done': (msg(POSTCOPY_DONE, struct.pack('<Q', 10)), E_OK),
    'ok-stats': (msg(STATS, b''), E_OK),
    'ok-stats-ok': (msg(STATS_OK, struct.pack('<H', 1) + bytes([5]) + b'pages' + struct.pack('<Q', 3)), E_OK),
    'ok-bind': (msg(BIND, TOKEN), E_OK),
    'ok-subhost': (msg(SUBHOST, struct.pack('<HBB', 23100, 1, 9) + b'10.77.0.3'), E_OK),
    'subhost-sub-8': (msg(SUBHOST, struct.pack('<HBB', 23100, 8, 9) + b'10.77.0.3'), E_MALFORMED),
    'subhost-port-zero': (msg(SUBHOST, struct.pack('<HBB', 0, 1, 9) + b'10.77.0.3'), E_MALFORMED),
    'subhost-host-len-lies': (msg(SUBHOST, struct.pack('<HBB', 1, 1, 12) + b'10.77.0.3'), E_MALFORMED),
    'subhost-host-bad': (msg(SUBHOST, struct.pack('<HBB', 1, 1, 3) + b'a b'), E_BAD_HOST),
    # header
    'empty': (b'', E_TRUNCATED),
    'header-short': (msg(STATUS, ref())[:20], E_TRUNCATED),
    'lying-payload-len': (hdr(STATUS, 40) + ref(), E_TRUNCATED),
    'bad-magic-wake': (msg(STATUS, ref(), magic=0x4B415746), E_BAD_MAGIC),
    'version-2': (msg(STATUS, ref(), version=2), E_VERSION),
    'type-zero': (msg(0, b''), E_UNKNOWN_TYPE),
    'type-28': (msg(28, b''), E_UNKNOWN_TYPE),
    'flags-unknown': (msg(STATUS, ref(), flags=4), E_BAD_FLAGS),
    'flags-reply-on-request': (msg(STATUS, ref(), flags=F_REPLY), E_BAD_FLAGS),
    'flags-no-reply-on-ok': (msg(OK, struct.pack('<Q', 1), flags=0), E_BAD_FLAGS),
    'header-reserved': (msg(STATUS, ref(), reserved=1), E_MALFORMED),
    'ctrl-payload-too-large': (hdr(STATUS, CTRL_PAYLOAD + 1), E_TOO_LARGE),
    'map-payload-too-large': (hdr(PAGE_MAP, MAX_PAYLOAD + 1), E_TOO_LARGE),
    # control bodies
    'prepare-short': (msg(PREPARE, prepare()[:10]), E_MALFORMED),
    'prepare-reserved': (msg(PREPARE, prepare(rsv=b'\0\0\1\0\0\0')), E_MALFORMED),
    'prepare-id-empty': (msg(PREPARE, prepare(vid=b'')), E_BAD_VM_ID),
    'prepare-id-space': (msg(PREPARE, prepare(vid=b'vm 1')), E_BAD_VM_ID),
    'prepare-id-too-long': (msg(PREPARE, prepare(vid=b'v' * 65)), E_TOO_LARGE),
    'prepare-id-len-lies': (msg(PREPARE, prepare(id_len=60, subs=())), E_MALFORMED),
    'prepare-nsubs-above-max': (msg(PREPARE, prepare(nsubs=9)), E_TOO_LARGE),
    'prepare-nsubs-lies-high': (msg(PREPARE, prepare(nsubs=2)), E_MALFORMED),
    'prepare-nsubs-lies-low': (msg(PREPARE, prepare(nsubs=0)), E_MALFORMED),
    'prepare-sub-port-zero': (msg(PREPARE, prepare(subs=((b'h', 0),))), E_MALFORMED),
    'prepare-sub-host-bad': (msg(PREPARE, prepare(subs=((b'h/x', 1),))), E_BAD_HOST),
    'prepare-sub-host-empty': (msg(PREPARE, prepare(subs=((b'', 1),))), E_BAD_HOST),
    'prepare-sub-host-too-long': (msg(PREPARE, prepare(subs=((b'h' * 64, 1),))), E_TOO_LARGE),
    'prepare-ok-port-zero': (msg(PREPARE_OK, prepare_ok(port=0)), E_MALFORMED),
    'prepare-ok-host-len-lies': (msg(PREPARE_OK, prepare_ok(host_len=3)), E_MALFORMED),
    'prepare-ok-reserved': (msg(PREPARE_OK, prepare_ok(rsv=1)), E_MALFORMED),
    'prepare-ok-host-nul': (msg(PREPARE_OK, prepare_ok(host=b'a\0b')), E_BAD_HOST),
    'start-mode-zero': (msg(START, start(mode=0)), E_MALFORMED),
    'start-mode-5': (msg(START, start(mode=5)), E_MALFORMED),
    'start-port-zero': (msg(START, start(port=0)), E_MALFORMED),
    'start-reserved': (msg(START, start(rsv2=1)), E_MALFORMED),
    'start-short': (msg(START, start()[:39]), E_MALFORMED),
    'start-trailing': (msg(START, start() + b'x'), E_MALFORMED),
    'start-host-space': (msg(START, start(host=b'a b')), E_BAD_HOST),
    'status-id-nul': (msg(STATUS, ref(vid=b'v\0')), E_BAD_VM_ID),
    'status-reserved': (msg(STATUS, ref(rsv=b'\0\1\0')), E_MALFORMED),
    'status-id-len-short': (msg(STATUS, ref(id_len=2)), E_MALFORMED),
    'abort-id-too-long': (msg(ABORT, ref(vid=b'v' * 65)), E_TOO_LARGE),
    'status-ok-phase-9': (msg(STATUS_OK, status_ok(phase=9)), E_MALFORMED),
    'status-ok-err-len-lies': (msg(STATUS_OK, status_ok(err=b'abc', err_len=5)), E_MALFORMED),
    'status-ok-err-too-long': (msg(STATUS_OK, status_ok(err=b'e' * 160)), E_TOO_LARGE),
    'status-ok-err-control-char': (msg(STATUS_OK, status_ok(err=b'a\nb')), E_MALFORMED),
    'status-ok-reserved': (msg(STATUS_OK, status_ok(rsv=1)), E_MALFORMED),
    'ok-long': (msg(OK, struct.pack('<QB', 1, 0)), E_MALFORMED),
    'error-msg-len-lies': (msg(ERROR, struct.pack('<IH', 12, 9) + b'no vm'), E_MALFORMED),
    # stream bodies
    'hello-name-empty': (msg(HELLO, struct.pack('<BBBBI', 1, 1, 0, 0, 0)), E_MALFORMED),
    'hello-version-inverted': (msg(HELLO, struct.pack('<BBBBI', 2, 1, 4, 0, 0) + b'vm-1'), E_MALFORMED),
    'auth-short': (msg(AUTH, NONCE + HMAC[:31]), E_MALFORMED),
    'auth-ok-port-zero': (msg(AUTH_OK, HMAC + struct.pack('<H6x', 0) + TOKEN), E_MALFORMED),
    'auth-ok-reserved': (msg(AUTH_OK, HMAC + struct.pack('<H5xB', 1, 1) + TOKEN), E_MALFORMED),
    'auth-ok-short': (msg(AUTH_OK, HMAC + struct.pack('<H6x', 1)), E_MALFORMED),
    'layout-no-regions': (msg(LAYOUT, layout(regions=())), E_MALFORMED),
    'layout-regions-above-max': (msg(LAYOUT, layout(nregions=17)), E_TOO_LARGE),
    'layout-nregions-lies': (msg(LAYOUT, layout(nregions=2)), E_MALFORMED),
    'layout-size-unaligned': (msg(LAYOUT, layout(npages=1, used=1, regions=((0, 4095, 0),))), E_MALFORMED),
    'layout-gap': (msg(LAYOUT, layout(npages=3, used=2, regions=((0, 4096, 0), (8192, 8192, 2)))), E_MALFORMED),
    'layout-sum-short': (msg(LAYOUT, layout(npages=16385)), E_MALFORMED),
    'layout-region-past-npages': (msg(LAYOUT, layout(npages=1, used=1, regions=((0, 1 << 62, 0),))), E_MALFORMED),
    'layout-used-above-npages': (msg(LAYOUT, layout(used=16385)), E_MALFORMED),
    'layout-npages-zero': (msg(LAYOUT, layout(npages=0, used=0)), E_MALFORMED),
    'layout-mode-zero': (msg(LAYOUT, layout(mode=0)), E_MALFORMED),
    'layout-reserved': (msg(LAYOUT, layout(rsv=1)), E_MALFORMED),
    'layout-ok-stage-too-small': (msg(LAYOUT_OK, struct.pack('<IIQQ', 9, 255, 0, 4096)), E_MALFORMED),
    'layout-ok-stage-above-max': (msg(LAYOUT_OK, struct.pack('<IIQQ', 9, 262145, 0, 4096)), E_TOO_LARGE),
    'layout-rkey-set': (msg(LAYOUT, layout()[:24] + struct.pack('<I', 0x1234) + layout()[28:]), E_MALFORMED),
    'extents-past-total': (msg(EXTENTS, extents(first=1, total=1)), E_MALFORMED),
    'extents-total-above-max': (msg(EXTENTS, extents(total=1025)), E_TOO_LARGE),
    'credit-zero': (msg(CREDIT, struct.pack('<II', 0, 0)), E_MALFORMED),
    'credit-above-max': (msg(CREDIT, struct.pack('<II', 262145, 0)), E_TOO_LARGE),
    'credit-reserved': (msg(CREDIT, struct.pack('<II', 1, 1)), E_MALFORMED),
    'credit-short': (msg(CREDIT, struct.pack('<I', 1)), E_MALFORMED),
    'fetch-zero': (msg(FETCH, struct.pack('<II', 0, 0)), E_MALFORMED),
    'fetch-above-max': (msg(FETCH, struct.pack('<II', 65, 0) + bytes(8 * 65)), E_TOO_LARGE),
    'fetch-count-lies': (msg(FETCH, struct.pack('<II', 2, 0) + bytes(8)), E_MALFORMED),
    'fetch-slot-past-ring': (msg(FETCH, struct.pack('<II', 2, 262143) + bytes(16)), E_MALFORMED),
    'map-dest-slot-past-ring': (msg(PAGE_MAP, page_map([mapent(slot=262144)])), E_MALFORMED),
    'map-dest-extent': (msg(PAGE_MAP, page_map([mapent(ext=1)])), E_MALFORMED),
    'extents-zero': (msg(EXTENTS, extents(())), E_MALFORMED),
    'extents-above-max': (msg(EXTENTS, extents(count=65)), E_TOO_LARGE),
    'extents-count-lies': (msg(EXTENTS, extents(count=2)), E_MALFORMED),
    'extents-length-zero': (msg(EXTENTS, extents(((0, 7, 0),))), E_MALFORMED),
    'extents-length-unaligned': (msg(EXTENTS, extents(((0, 7, 4097),))), E_MALFORMED),
    'extents-sub-8': (msg(EXTENTS, extents(((8, 7, 4096),))), E_MALFORMED),
    'extents-reserved': (msg(EXTENTS, extents(rsv=b'\0\1')), E_MALFORMED),
    'page-map-empty': (msg(PAGE_MAP, page_map([])), E_MALFORMED),
    'page-map-count-above-max': (msg(PAGE_MAP, page_map([mapent()], count=2049)), E_TOO_LARGE),
    'page-map-count-lies-high': (msg(PAGE_MAP, page_map([mapent()], count=2)), E_MALFORMED),
    'page-map-count-lies-low': (msg(PAGE_MAP, page_map([mapent(), mapent()], count=1)), E_MALFORMED),
    'page-map-where-zero': (msg(PAGE_MAP, page_map([mapent(where=0)])), E_MALFORMED),
    'page-map-where-5': (msg(PAGE_MAP, page_map([mapent(where=5)])), E_MALFORMED),
    'page-map-sub-8': (msg(PAGE_MAP, page_map([mapent(where=2, sub=8)])), E_MALFORMED),
    'page-map-extent-1024': (msg(PAGE_MAP, page_map([mapent(where=2, ext=1024)])), E_MALFORMED),
    'page-map-reserved': (msg(PAGE_MAP, page_map([mapent(rsv=1)])), E_MALFORMED),
    'page-map-header-reserved': (msg(PAGE_MAP, page_map(rsv=1)), E_MALFORMED),
    'round-end-reserved': (msg(ROUND_END, struct.pack('<IIQ', 2, 1, 77)), E_MALFORMED),
    'devstate-total-above-max': (msg(DEVSTATE, devstate(total=(64 << 20) + 1)), E_TOO_LARGE),
    'devstate-past-total': (msg(DEVSTATE, devstate(total=12, off=5)), E_MALFORMED),
    'devstate-offset-past-total': (msg(DEVSTATE, devstate(total=4, off=5, data=b'')), E_MALFORMED),
    'devstate-short': (msg(DEVSTATE, b'\0' * 15), E_MALFORMED),
    'switchover-short': (msg(SWITCHOVER, struct.pack('<IIQ', 4, 0, 12)[:15]), E_MALFORMED),
    'resumed-short': (msg(RESUMED, b'\0' * 7), E_MALFORMED),
    'stats-with-payload': (msg(STATS, b'\0'), E_MALFORMED),
    'bind-short': (msg(BIND, TOKEN[:31]), E_MALFORMED),
}


def main():
    for f in glob.glob(os.path.join(HERE, '*.bin')):
        os.remove(f)
    for name, (data, code) in sorted(CASES.items()):
        with open(os.path.join(HERE, '%s.E%d.bin' % (name, code)), 'wb') as f:
            f.write(data)
    print('%d files' % len(CASES))


if __name__ == '__main__':
    main()
