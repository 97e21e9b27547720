#!/usr/bin/env python3
"""Generate the page-protocol malformed-message corpus.

Each case is written as NAME.E<code>.bin, where <code> is the FERRY_E_* value
ferry_page_decode() must return for the file's bytes (0 = valid: the
controls, which prove the layouts below match the codec so that each bad
case fails for the reason its name gives). tests/unit/proto/test_page_malformed.c
checks every file. Layouts: proto/page.h and the table at the top of
proto/page.c.

Run from anywhere:  python3 tests/corpus/page/make_corpus.py
It deletes the *.bin files in its directory and writes them again.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

MAGIC = 0x59525246
VERSION = 1
HDR_LEN = 24
MAX_DATA = 4 << 20
MAX_IOV = 1024
MAX_PAYLOAD = MAX_DATA + 8 + MAX_IOV * 16
CTRL_MAX = 4096
F_REPLY = 0x0001

(HELLO, CHALLENGE, AUTH, AUTH_OK, ALLOC, ALLOC_OK, FREE, FREE_OK, READ,
 READ_DATA, WRITE, WRITE_OK, STATS, STATS_OK, ERROR, SHARE, SHARE_OK, ATTACH,
 ATTACH_OK, DETACH, DETACH_OK, UNSHARE, UNSHARE_OK, KEEP, KEEP_OK, CLAIM,
 CLAIM_OK, DISCARD, DISCARD_OK) = range(1, 30)
REPLIES = {CHALLENGE, AUTH_OK, ALLOC_OK, FREE_OK, READ_DATA, WRITE_OK,
           STATS_OK, ERROR, SHARE_OK, ATTACH_OK, DETACH_OK, UNSHARE_OK,
           KEEP_OK, CLAIM_OK, DISCARD_OK}
TOKEN = bytes(range(100, 132))

E_OK, E_TRUNCATED, E_BAD_MAGIC, E_VERSION, E_UNKNOWN_TYPE, E_BAD_FLAGS, \
    E_TOO_LARGE, E_MALFORMED = range(8)
E_BAD_ALIGNMENT = 19

REQ_ID = 0x1122334455667788


def hdr(mtype, payload_len, flags=None, magic=MAGIC, version=VERSION,
        req=REQ_ID, reserved=0):
    if flags is None:
        flags = F_REPLY if mtype in REPLIES else 0
    return struct.pack('<IBBHQII', magic, version, mtype, flags, req,
                       payload_len, reserved)


def msg(mtype, payload, **kw):
    """A message whose header announces exactly the payload given."""
    return hdr(mtype, len(payload), **kw) + payload


# ---------------------------------------------------------------- bodies

def hello_body(name=b'vm-42.host-a', vmin=1, vmax=1, name_len=None,
               reserved=0, features=0):
    if name_len is None:
        name_len = len(name)
    return struct.pack('<BBBBI', vmin, vmax, name_len, reserved, features) + name


NONCE = bytes(range(32))
MAC = bytes(255 - i for i in range(32))


def challenge_body(version=1, reserved=b'\0\0\0'):
    return bytes([version]) + reserved + NONCE


def auth_ok_body(max_data=MAX_DATA, reserved=0):
    return MAC + struct.pack('<QQII', 7, 1 << 30, max_data, reserved)


def alloc_body(length=1 << 21, flags=0, reserved=0):
    return struct.pack('<QII', length, flags, reserved)


def alloc_ok_body(base=0x7f0000000000, length=1 << 21):
    return struct.pack('<IIQQ', 7, 0xabcd, base, length)


def free_body(extent_id=7, reserved=0):
    return struct.pack('<II', extent_id, reserved)


def share_body(extent_id=7, rights=1):
    return struct.pack('<II', extent_id, rights)


def share_ok_body(extent_id=7, rights=3, token=TOKEN):
    return struct.pack('<II', extent_id, rights) + token


def attach_ok_body(base=0x7f0000200000, length=1 << 21, rights=2, reserved=0):
    return struct.pack('<IIQQII', 3, 0xbeef, base, length, rights, reserved)


def iov(key=1, length=4096, offset=0):
    return struct.pack('<IIQ', key, length, offset)


def rw_body(entries, count=None, reserved=0, data=b''):
    if count is None:
        count = len(entries)
    return struct.pack('<II', count, reserved) + b''.join(entries) + data


def read_data_body(data=b'\xaa' * 16, count=1, reserved=0):
    return struct.pack('<II', count, reserved) + data


def stat(name, value, name_len=None):
    if name_len is None:
        name_len = len(name)
    return bytes([name_len]) + name + struct.pack('<Q', value)


def stats_ok_body(entries, count=None):
    if count is None:
        count = len(entries)
    return struct.pack('<H', count) + b''.join(entries)


def error_body(text=b'quota exceeded', code=11, msg_len=None):
    if msg_len is None:
        msg_len = len(text)
    return struct.pack('<IH', code, msg_len) + text


TWO_IOV = [iov(1, 16, 0x1000), iov(2, 8, 0x2000)]
STAT_ENTRIES = [stat(b'extents', 3), stat(b'bytes_used', 6 << 20)]


def cases():
    c = {}

    # Controls: one valid message of every type.
    c['valid-hello.E0'] = msg(HELLO, hello_body())
    c['valid-challenge.E0'] = msg(CHALLENGE, challenge_body())
    c['valid-auth.E0'] = msg(AUTH, NONCE + MAC)
    c['valid-auth-ok.E0'] = msg(AUTH_OK, auth_ok_body())
    c['valid-alloc.E0'] = msg(ALLOC, alloc_body())
    c['valid-alloc-ok.E0'] = msg(ALLOC_OK, alloc_ok_body())
    c['valid-free.E0'] = msg(FREE, free_body())
    c['valid-free-ok.E0'] = msg(FREE_OK, free_body())
    c['valid-read.E0'] = msg(READ, rw_body(TWO_IOV))
    c['valid-read-data.E0'] = msg(READ_DATA, read_data_body(b'\xaa' * 24, count=2))
    c['valid-write.E0'] = msg(WRITE, rw_body(TWO_IOV, data=b'\x55' * 24))
    c['valid-write-ok.E0'] = msg(WRITE_OK, struct.pack('<II', 2, 0))
    c['valid-stats.E0'] = msg(STATS, b'')
    c['valid-stats-ok.E0'] = msg(STATS_OK, stats_ok_body(STAT_ENTRIES))
    c['valid-stats-ok-empty.E0'] = msg(STATS_OK, stats_ok_body([]))
    c['valid-error.E0'] = msg(ERROR, error_body())
    c['valid-trailing-bytes.E0'] = msg(FREE, free_body()) + b'\xff' * 5

    # Truncation at every header offset, then inside the payload.
    good = c['valid-hello.E0']
    for cut in range(HDR_LEN):
        c['truncated-header-%02d.E1' % cut] = good[:cut]
    c['truncated-payload-hello.E1'] = good[:-1]
    c['truncated-header-only-alloc.E1'] = c['valid-alloc.E0'][:HDR_LEN]
    c['truncated-write-data.E1'] = c['valid-write.E0'][:-1]
    c['truncated-read-vector.E1'] = c['valid-read.E0'][:HDR_LEN + 8 + 16 + 3]
    c['lying-payload-len.E1'] = hdr(HELLO, 100) + hello_body()
    c['lying-payload-len-write.E1'] = hdr(WRITE, MAX_PAYLOAD) + rw_body(TWO_IOV)

    # Header fields.
    c['bad-magic.E2'] = msg(STATS, b'', magic=0x59525247)
    c['bad-magic-big-endian.E2'] = msg(STATS, b'', magic=0x46525259)
    c['bad-magic-zero.E2'] = bytes(HDR_LEN)
    c['wrong-version-0.E3'] = msg(STATS, b'', version=0)
    c['wrong-version-2.E3'] = msg(STATS, b'', version=2)
    c['wrong-version-255.E3'] = msg(STATS, b'', version=255)
    c['unknown-type-0.E4'] = msg(0, b'')
    c['unknown-type-30.E4'] = msg(30, b'')
    c['unknown-type-255.E4'] = msg(255, b'')
    c['unknown-flag-bit.E5'] = msg(STATS, b'', flags=0x0002)
    c['unknown-flag-high-bit.E5'] = msg(ERROR, error_body(), flags=0x8001)
    c['reply-flag-on-request.E5'] = msg(ALLOC, alloc_body(), flags=F_REPLY)
    c['reply-flag-missing-on-reply.E5'] = msg(ALLOC_OK, alloc_ok_body(), flags=0)
    c['reply-flag-missing-on-error.E5'] = msg(ERROR, error_body(), flags=0)
    c['header-reserved-nonzero.E7'] = msg(STATS, b'', reserved=1)
    c['header-reserved-high-byte.E7'] = msg(STATS, b'', reserved=0x80000000)
    c['payload-len-above-max.E6'] = hdr(WRITE, MAX_PAYLOAD + 1)
    c['payload-len-all-ones.E6'] = hdr(WRITE, 0xffffffff)
    c['ctrl-payload-len-above-ctrl-max.E6'] = hdr(HELLO, CTRL_MAX - HDR_LEN + 1)
    c['read-payload-len-above-vector-max.E6'] = hdr(READ, 8 + MAX_IOV * 16 + 1)

    # HELLO.
    c['hello-name-len-too-long.E7'] = msg(HELLO, hello_body(b'abcd', name_len=10))
    c['hello-name-len-too-short.E7'] = msg(HELLO, hello_body(b'abcd', name_len=2))
    c['hello-name-empty.E7'] = msg(HELLO, hello_body(b''))
    c['hello-name-too-long.E6'] = msg(HELLO, hello_body(b'n' * 65))
    c['hello-name-nonprintable.E7'] = msg(HELLO, hello_body(b'vm\x01x'))
    c['hello-name-nul.E7'] = msg(HELLO, hello_body(b'vm\x00x'))
    c['hello-name-del.E7'] = msg(HELLO, hello_body(b'vm\x7f'))
    c['hello-name-utf8.E7'] = msg(HELLO, hello_body('vm-é'.encode()))
    c['hello-version-range-inverted.E7'] = msg(HELLO, hello_body(vmin=2, vmax=1))
    c['hello-reserved.E7'] = msg(HELLO, hello_body(reserved=1))
    c['hello-payload-short.E7'] = msg(HELLO, hello_body(b'')[:7])

    # Fixed-size bodies: one byte short, one byte long, reserved set.
    c['challenge-short.E7'] = msg(CHALLENGE, challenge_body()[:-1])
    c['challenge-long.E7'] = msg(CHALLENGE, challenge_body() + b'\0')
    c['challenge-reserved.E7'] = msg(CHALLENGE, challenge_body(reserved=b'\0\1\0'))
    c['auth-short.E7'] = msg(AUTH, (NONCE + MAC)[:-1])
    c['auth-empty.E7'] = msg(AUTH, b'')
    c['auth-ok-long.E7'] = msg(AUTH_OK, auth_ok_body() + b'\0')
    c['auth-ok-reserved.E7'] = msg(AUTH_OK, auth_ok_body(reserved=1))
    c['auth-ok-max-data-zero.E7'] = msg(AUTH_OK, auth_ok_body(max_data=0))
    c['auth-ok-max-data-huge.E6'] = msg(AUTH_OK, auth_ok_body(max_data=MAX_DATA + 1))
    c['alloc-length-zero.E7'] = msg(ALLOC, alloc_body(length=0))
    c['alloc-length-unaligned.E19'] = msg(ALLOC, alloc_body(length=4097))
    c['alloc-length-top-unaligned.E19'] = msg(ALLOC, alloc_body(length=2**64 - 1))
    c['alloc-flags.E5'] = msg(ALLOC, alloc_body(flags=1))
    c['alloc-reserved.E7'] = msg(ALLOC, alloc_body(reserved=1))
    c['alloc-payload-long.E7'] = msg(ALLOC, alloc_body() + b'\0' * 8)
    c['alloc-ok-base-overflow.E7'] = msg(ALLOC_OK, alloc_ok_body(base=2**64 - 4096, length=8192))
    c['alloc-ok-length-zero.E7'] = msg(ALLOC_OK, alloc_ok_body(length=0))
    c['alloc-ok-length-unaligned.E19'] = msg(ALLOC_OK, alloc_ok_body(length=100))
    c['free-reserved.E7'] = msg(FREE, free_body(reserved=1))
    c['free-short.E7'] = msg(FREE, free_body()[:4])
    c['free-ok-long.E7'] = msg(FREE_OK, free_body() + b'\0')
    c['write-ok-count-zero.E7'] = msg(WRITE_OK, struct.pack('<II', 0, 0))
    c['write-ok-count-huge.E6'] = msg(WRITE_OK, struct.pack('<II', MAX_IOV + 1, 0))
    c['write-ok-short.E7'] = msg(WRITE_OK, struct.pack('<I', 1))
    c['stats-with-payload.E7'] = msg(STATS, b'\0\0')

    # STATS_OK.
    c['stats-count-lies.E7'] = msg(STATS_OK, stats_ok_body(STAT_ENTRIES, count=3))
    c['stats-count-lies-short.E7'] = msg(STATS_OK, stats_ok_body(STAT_ENTRIES, count=1))
    c['stats-count-too-many.E6'] = msg(STATS_OK, stats_ok_body(STAT_ENTRIES, count=65))
    c['stats-count-all-ones.E6'] = msg(STATS_OK, stats_ok_body(STAT_ENTRIES, count=0xffff))
    c['stats-name-too-long.E6'] = msg(STATS_OK, stats_ok_body([stat(b'a' * 33, 1)]))
    c['stats-name-empty.E7'] = msg(STATS_OK, stats_ok_body([stat(b'', 1)]))
    c['stats-name-uppercase.E7'] = msg(STATS_OK, stats_ok_body([stat(b'Bytes', 1)]))
    c['stats-name-dash.E7'] = msg(STATS_OK, stats_ok_body([stat(b'bytes-used', 1)]))
    c['stats-name-len-overruns.E7'] = msg(STATS_OK, stats_ok_body([stat(b'abc', 1, name_len=20)]))
    c['stats-trailing-bytes.E7'] = msg(STATS_OK, stats_ok_body(STAT_ENTRIES) + b'\0')
    c['stats-value-cut.E7'] = msg(STATS_OK, stats_ok_body(STAT_ENTRIES)[:-1])
    c['stats-payload-one-byte.E7'] = msg(STATS_OK, b'\0')

    # ERROR.
    c['error-msg-len-too-long.E7'] = msg(ERROR, error_body(msg_len=20))
    c['error-msg-len-too-short.E7'] = msg(ERROR, error_body(msg_len=3))
    c['error-msg-len-above-max.E6'] = msg(ERROR, error_body(b'x' * 257))
    c['error-msg-len-all-ones.E6'] = msg(ERROR, error_body(b'x' * 8, msg_len=0xffff))
    c['error-msg-nul.E7'] = msg(ERROR, error_body(b'bad\0msg'))
    c['error-payload-short.E7'] = msg(ERROR, error_body(b'')[:5])

    # READ / WRITE vectors.
    c['read-count-zero.E7'] = msg(READ, rw_body([]))
    c['huge-iov-count.E6'] = msg(READ, rw_body(TWO_IOV, count=0xffffffff))
    # WRITE, so that the header's READ size limit does not catch it first.
    c['iov-count-1025.E6'] = msg(
        WRITE, rw_body([iov(length=1, offset=i) for i in range(MAX_IOV + 1)], data=b'\x55' * 1025))
    c['read-count-lies.E7'] = msg(READ, rw_body(TWO_IOV, count=3))
    c['read-count-lies-short.E7'] = msg(READ, rw_body(TWO_IOV, count=1))
    c['read-payload-one-extra.E7'] = msg(READ, rw_body(TWO_IOV) + b'\0')
    c['read-payload-short-prefix.E7'] = msg(READ, struct.pack('<I', 1))
    c['read-reserved.E7'] = msg(READ, rw_body(TWO_IOV, reserved=1))
    c['read-entry-length-zero.E7'] = msg(READ, rw_body([iov(length=16), iov(length=0)]))
    c['read-entry-length-huge.E6'] = msg(READ, rw_body([iov(length=MAX_DATA + 1)]))
    c['read-entry-length-all-ones.E6'] = msg(READ, rw_body([iov(length=0xffffffff)]))
    c['offset-overflow.E7'] = msg(READ, rw_body([iov(length=4096, offset=2**64 - 4096)]))
    c['offset-overflow-second-entry.E7'] = msg(
        READ, rw_body([iov(), iov(length=2, offset=2**64 - 1)]))
    c['read-sum-too-large.E6'] = msg(READ, rw_body([iov(length=MAX_DATA), iov(length=1)]))
    c['read-sum-wraps-u32.E6'] = msg(
        READ, rw_body([iov(length=MAX_DATA, offset=i * MAX_DATA) for i in range(1024)]))
    c['write-data-short.E7'] = msg(WRITE, rw_body(TWO_IOV, data=b'\x55' * 23))
    c['write-data-long.E7'] = msg(WRITE, rw_body(TWO_IOV, data=b'\x55' * 25))
    c['write-no-data.E7'] = msg(WRITE, rw_body(TWO_IOV))
    # The first data bytes read as a plausible third entry; the sizes still disagree.
    c['write-count-lies.E7'] = msg(
        WRITE, rw_body(TWO_IOV, count=3, data=iov(3, 8, 0x3000) + b'\x55' * 8))
    c['read-data-count-zero.E7'] = msg(READ_DATA, read_data_body(count=0))
    c['read-data-count-huge.E6'] = msg(READ_DATA, read_data_body(count=MAX_IOV + 1))
    c['read-data-reserved.E7'] = msg(READ_DATA, read_data_body(reserved=1))
    c['read-data-short-prefix.E7'] = msg(READ_DATA, struct.pack('<I', 1))
    # Extent sharing.
    c['valid-share.E0'] = msg(SHARE, share_body())
    c['valid-share-ok.E0'] = msg(SHARE_OK, share_ok_body())
    c['valid-attach.E0'] = msg(ATTACH, TOKEN)
    c['valid-attach-ok.E0'] = msg(ATTACH_OK, attach_ok_body())
    c['valid-detach.E0'] = msg(DETACH, free_body(extent_id=3))
    c['valid-detach-ok.E0'] = msg(DETACH_OK, free_body(extent_id=3))
    c['valid-unshare.E0'] = msg(UNSHARE, free_body())
    c['valid-unshare-ok.E0'] = msg(UNSHARE_OK, struct.pack('<II', 7, 5))
    c['share-rights-zero.E7'] = msg(SHARE, share_body(rights=0))
    c['share-rights-unknown-bit.E5'] = msg(SHARE, share_body(rights=4))
    c['share-rights-all-ones.E5'] = msg(SHARE, share_body(rights=0xffffffff))
    c['share-short.E7'] = msg(SHARE, share_body()[:4])
    c['share-long.E7'] = msg(SHARE, share_body() + b'\0')
    c['share-reply-flag.E5'] = msg(SHARE, share_body(), flags=F_REPLY)
    c['share-ok-rights-zero.E7'] = msg(SHARE_OK, share_ok_body(rights=0))
    c['share-ok-rights-unknown-bit.E5'] = msg(SHARE_OK, share_ok_body(rights=8))
    c['share-ok-token-short.E7'] = msg(SHARE_OK, share_ok_body()[:-1])
    c['share-ok-no-reply-flag.E5'] = msg(SHARE_OK, share_ok_body(), flags=0)
    c['attach-token-short.E7'] = msg(ATTACH, TOKEN[:31])
    c['attach-token-long.E7'] = msg(ATTACH, TOKEN + b'\0')
    c['attach-empty.E7'] = msg(ATTACH, b'')
    c['attach-lying-payload-len.E1'] = hdr(ATTACH, 32) + TOKEN[:16]
    c['attach-ok-reserved.E7'] = msg(ATTACH_OK, attach_ok_body(reserved=1))
    c['attach-ok-rights-zero.E7'] = msg(ATTACH_OK, attach_ok_body(rights=0))
    c['attach-ok-rights-unknown-bit.E5'] = msg(ATTACH_OK, attach_ok_body(rights=0x80000002))
    c['attach-ok-length-zero.E7'] = msg(ATTACH_OK, attach_ok_body(length=0))
    c['attach-ok-length-unaligned.E19'] = msg(ATTACH_OK, attach_ok_body(length=4097))
    c['attach-ok-base-overflow.E7'] = msg(ATTACH_OK, attach_ok_body(base=2**64 - 4096, length=8192))
    c['attach-ok-short.E7'] = msg(ATTACH_OK, attach_ok_body()[:28])
    c['detach-reserved.E7'] = msg(DETACH, free_body(reserved=1))
    c['detach-short.E7'] = msg(DETACH, free_body()[:4])
    c['detach-ok-long.E7'] = msg(DETACH_OK, free_body() + b'\0')
    c['unshare-reserved.E7'] = msg(UNSHARE, free_body(reserved=2))
    c['unshare-long.E7'] = msg(UNSHARE, free_body() + b'\0' * 8)
    c['unshare-ok-short.E7'] = msg(UNSHARE_OK, struct.pack('<I', 7))
    # Kept extents.
    c['valid-keep.E0'] = msg(KEEP, free_body())
    c['valid-keep-ok.E0'] = msg(KEEP_OK, struct.pack('<II', 7, 0) + TOKEN)
    c['valid-claim.E0'] = msg(CLAIM, TOKEN)
    c['valid-claim-ok.E0'] = msg(CLAIM_OK, alloc_ok_body())
    c['valid-discard.E0'] = msg(DISCARD, TOKEN)
    c['valid-discard-ok.E0'] = msg(DISCARD_OK, struct.pack('<Q', 1 << 21))
    c['keep-reserved.E7'] = msg(KEEP, free_body(reserved=1))
    c['keep-short.E7'] = msg(KEEP, free_body()[:4])
    c['keep-long.E7'] = msg(KEEP, free_body() + b'\0')
    c['keep-reply-flag.E5'] = msg(KEEP, free_body(), flags=F_REPLY)
    c['keep-ok-reserved.E7'] = msg(KEEP_OK, struct.pack('<II', 7, 3) + TOKEN)
    c['keep-ok-token-short.E7'] = msg(KEEP_OK, struct.pack('<II', 7, 0) + TOKEN[:31])
    c['keep-ok-no-reply-flag.E5'] = msg(KEEP_OK, struct.pack('<II', 7, 0) + TOKEN, flags=0)
    c['claim-token-short.E7'] = msg(CLAIM, TOKEN[:31])
    c['claim-token-long.E7'] = msg(CLAIM, TOKEN + b'\0')
    c['claim-empty.E7'] = msg(CLAIM, b'')
    c['claim-lying-payload-len.E1'] = hdr(CLAIM, 32) + TOKEN[:8]
    c['claim-ok-length-zero.E7'] = msg(CLAIM_OK, alloc_ok_body(length=0))
    c['claim-ok-length-unaligned.E19'] = msg(CLAIM_OK, alloc_ok_body(length=8191))
    c['claim-ok-base-overflow.E7'] = msg(CLAIM_OK, alloc_ok_body(base=2**64 - 4096, length=8192))
    c['claim-ok-short.E7'] = msg(CLAIM_OK, alloc_ok_body()[:20])
    c['discard-token-short.E7'] = msg(DISCARD, TOKEN[:16])
    c['discard-reply-flag.E5'] = msg(DISCARD, TOKEN, flags=F_REPLY)
    c['discard-ok-length-zero.E7'] = msg(DISCARD_OK, struct.pack('<Q', 0))
    c['discard-ok-length-unaligned.E19'] = msg(DISCARD_OK, struct.pack('<Q', 4095))
    c['discard-ok-long.E7'] = msg(DISCARD_OK, struct.pack('<QI', 4096, 0))
    return c


def main():
    for name in os.listdir(HERE):
        if name.endswith('.bin'):
            os.unlink(os.path.join(HERE, name))
    all_cases = cases()
    for name, data in sorted(all_cases.items()):
        with open(os.path.join(HERE, name + '.bin'), 'wb') as f:
            f.write(data)
    bad = sum(1 for n in all_cases if not n.endswith('.E0'))
    print('%d files (%d malformed) in %s' % (len(all_cases), bad, HERE))


if __name__ == '__main__':
    main()
