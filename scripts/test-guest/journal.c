// flotilla-journal: the test guest's journal writer (built into its initramfs by
// scripts/build-test-guest.sh, statically linked).
//
//   flotilla-journal DEVICE VM_ID EPOCH INTERVAL_MS
//
// Appends a record every INTERVAL_MS to DEVICE (the guest's virtio disk: the VM's disk file on its
// Cluster Shared Volume) in Flotilla's journal format (Sources/Guests/JournalFormat.swift):
//
//   header  "FLOTJRN1", VM id (u64)
//   record  length L (u32), ~L (u32), epoch (u64), sequence (u64), payload (L bytes),
//           CRC-32C (u32) of everything before it in the record      (little-endian)
//
// At start it reads the journal: a disk of zeros gets the header; records are checked as the
// node's journal reader checks them (a damaged one stops the writer, with the byte offset); the
// writer continues after the last record, at its sequence number + 1. It refuses to write at all
// when the journal holds a newer epoch than its own (a newer owner has written: this instance is
// a stale one). Each record is written with O_DIRECT in whole sectors (the sector holding the
// end of the previous record is rewritten with it) and flushed (fdatasync: QEMU flushes the host
// file) before it is reported on stdout as
//
//   flotilla-journal: acked vm=ID epoch=E seq=N
//
// so a line on the console is a record on the disk. The node's tests read the acknowledged
// records from the console and check the disk with JournalChecker.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

enum { SECTOR = 512, HEADER = 16, OVERHEAD = 28, MAX_PAYLOAD = 64 << 10, MAX_JOURNAL = 64 << 20 };

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32c(const uint8_t *bytes, size_t count) {
    uint32_t c = ~0u;
    for (size_t i = 0; i < count; i++) c = crc_table[(c ^ bytes[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

static uint64_t load(const uint8_t *p, int size) {
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void store(uint8_t *p, uint64_t v, int size) {
    for (int i = 0; i < size; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int all_zero(const uint8_t *p, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (p[i]) return 0;
    return 1;
}

static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *format, ...) {
    va_list args;
    va_start(args, format);
    printf("flotilla-journal: ");
    vprintf(format, args);
    printf("\n");
    fflush(stdout);
    va_end(args);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        say("usage: flotilla-journal DEVICE VM_ID EPOCH INTERVAL_MS");
        return 2;
    }
    const char *device = argv[1];
    uint64_t vm = strtoull(argv[2], NULL, 10), epoch = strtoull(argv[3], NULL, 10);
    long interval = strtol(argv[4], NULL, 10);
    if (vm == 0 || interval <= 0) {
        say("needs a VM id and an interval above 0, got %s and %s", argv[2], argv[4]);
        return 2;
    }
    crc_init();
    int fd = open(device, O_RDWR | O_DIRECT);
    if (fd < 0) {
        say("cannot open %s: %s", device, strerror(errno));
        return 1;
    }
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
        say("cannot read the size of %s: %s", device, strerror(errno));
        return 1;
    }
    if (size > MAX_JOURNAL) size = MAX_JOURNAL;
    size -= size % SECTOR;
    if (size < 64 * 1024) {
        say("%s holds %" PRIu64 " bytes, too few for a journal", device, size);
        return 1;
    }
    uint8_t *disk;
    if (posix_memalign((void **)&disk, 4096, size + 2 * SECTOR + OVERHEAD + 128) != 0) {
        say("out of memory for %" PRIu64 " bytes", size);
        return 1;
    }
    for (uint64_t done = 0; done < size;) {
        ssize_t n = pread(fd, disk + done, size - done, (off_t)done);
        if (n <= 0) {
            say("cannot read %s at byte %" PRIu64 ": %s", device, done, n < 0 ? strerror(errno) : "end of device");
            return 1;
        }
        done += (uint64_t)n;
    }

    // The journal as it lies on the disk.
    uint64_t end = HEADER, sequence = 0, last_epoch = 0;
    if (all_zero(disk, HEADER)) {
        if (!all_zero(disk, size)) {
            say("%s has no journal header but is not empty; refusing to write", device);
            return 1;
        }
        memcpy(disk, "FLOTJRN1", 8);
        store(disk + 8, vm, 8);
        end = HEADER;
    } else {
        if (memcmp(disk, "FLOTJRN1", 8) != 0) {
            say("%s is not a journal (no FLOTJRN1 header); refusing to write", device);
            return 1;
        }
        if (load(disk + 8, 8) != vm) {
            say("%s is the journal of vm%" PRIu64 ", not vm%" PRIu64 "; refusing to write", device, load(disk + 8, 8), vm);
            return 1;
        }
        while (end + 8 <= size && !all_zero(disk + end, size - end)) {
            uint32_t length = (uint32_t)load(disk + end, 4);
            if ((uint32_t)load(disk + end + 4, 4) != (uint32_t)~length || length > MAX_PAYLOAD) {
                say("damaged record at byte %" PRIu64 " (its length check fails); refusing to write", end);
                return 1;
            }
            uint64_t next = end + OVERHEAD + length;
            if (next > size) break;
            if ((uint32_t)load(disk + next - 4, 4) != crc32c(disk + end, next - 4 - end)) {
                say("damaged record at byte %" PRIu64 " (its checksum fails); refusing to write", end);
                return 1;
            }
            uint64_t record_epoch = load(disk + end + 8, 8), record_sequence = load(disk + end + 16, 8);
            if (record_sequence != sequence + 1) {
                say("record at byte %" PRIu64 " has seq %" PRIu64 " after %" PRIu64 "; refusing to write", end,
                    record_sequence, sequence);
                return 1;
            }
            sequence = record_sequence;
            last_epoch = record_epoch;
            end = next;
        }
    }
    if (last_epoch > epoch) {
        say("refused: the journal has epoch %" PRIu64 ", newer than mine (%" PRIu64 "): another instance owns it",
            last_epoch, epoch);
        return 1;
    }
    say("vm%" PRIu64 " epoch %" PRIu64 ": %" PRIu64 " records on %s, appending after byte %" PRIu64, vm, epoch,
        sequence, device, end);

    // The header of a new journal goes down first, flushed, before any record.
    if (end == HEADER && sequence == 0) {
        if (pwrite(fd, disk, SECTOR, 0) != SECTOR || fdatasync(fd) != 0) {
            say("cannot write the header: %s", strerror(errno));
            return 1;
        }
    }
    for (;;) {
        sequence++;
        char payload[96];
        int length = snprintf(payload, sizeof payload, "vm%" PRIu64 " epoch %" PRIu64 " seq %" PRIu64, vm, epoch,
                              sequence);
        if (end + OVERHEAD + (uint64_t)length + SECTOR > size) {
            say("the disk is full at byte %" PRIu64 "; stopping", end);
            for (;;) pause();
        }
        uint8_t *record = disk + end;
        store(record, (uint64_t)length, 4);
        store(record + 4, (uint32_t)~(uint32_t)length, 4);
        store(record + 8, epoch, 8);
        store(record + 16, sequence, 8);
        memcpy(record + 24, payload, (size_t)length);
        store(record + 24 + length, crc32c(record, 24 + (size_t)length), 4);
        uint64_t next = end + OVERHEAD + (uint64_t)length;
        // Whole sectors, from the one the record starts in to the one it ends in; what follows the
        // record in its last sector is zeros (the disk beyond the journal's end is).
        uint64_t first = end - end % SECTOR, last = (next + SECTOR - 1) / SECTOR * SECTOR;
        memset(disk + next, 0, last - next);
        if (pwrite(fd, disk + first, last - first, (off_t)first) != (ssize_t)(last - first) || fdatasync(fd) != 0) {
            say("cannot write seq %" PRIu64 ": %s; stopping", sequence, strerror(errno));
            return 1;
        }
        say("acked vm=%" PRIu64 " epoch=%" PRIu64 " seq=%" PRIu64, vm, epoch, sequence);
        end = next;
        struct timespec wait = {interval / 1000, (interval % 1000) * 1000000L};
        nanosleep(&wait, NULL);
    }
}
