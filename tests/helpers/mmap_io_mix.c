/*
 * mmap_io_mix: many threads and processes write disjoint byte ranges of
 * every page of one file, each through a different path (pwrite on shared
 * or own fds, O_DIRECT pwrite, stores through one shared mapping or a
 * mapping of their own), read back their own bytes through a *different*
 * path after each write, and at the end the whole file is compared byte for
 * byte with the model (what each writer wrote last), through pread, a
 * read-only open and a fresh mapping.
 *
 * Before that, each round runs the plain case of issue 19: one thread
 * pwrites 8 bytes at 1 KiB of every page while another stores 8 bytes at
 * 3 KiB of every page through a shared mapping, with no read-backs to slow
 * them down; then both markers of every page are checked.
 *
 * Usage: mmap_io_mix PATH ROUNDS
 * Per round the file is prepared three ways in turn: sparse (ftruncate),
 * preallocated (posix_fallocate) and written (pwrite of a fill pattern).
 * Prints one line per problem and a summary; exits 0 only when nothing was
 * lost or stale, 1 on a mismatch, 2 on a setup error.
 *
 * Used by tests/fuse_mmap_pwrite.rs (compiled with cc at test time).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define FILE_SIZE (1 << 20)
#define PAGE 4096
#define PAGES (FILE_SIZE / PAGE)
#define PASSES 3
#define DIRECT_BLOCK 512   /* page bytes [0, 512): the O_DIRECT writer */
#define SLOT 64            /* page bytes [512 + 64 * w, +64): writer w */
#define SLOT_BASE 512

enum path { PWRITE_SHARED_FD, STORE_SHARED_MAP, PWRITE_OWN_FD, STORE_OWN_MAP };

static const char *file_path;
static int shared_fd = -1;
static unsigned char *shared_map;
static uint32_t round_no;
static char prep_name[16];

static void die(const char *what) {
    fprintf(stderr, "mmap_io_mix: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint8_t fill_byte(long off) { return (uint8_t)(0x5a ^ (off * 131)); }

/* The value writer w puts into page p in pass k of this round. */
static void slot_value(unsigned char *out, int w, long p, int k) {
    for (int i = 0; i < SLOT; i += 8) {
        uint64_t v = ((uint64_t)0xC0 << 56) | ((uint64_t)w << 48) |
                     ((uint64_t)round_no << 24) | ((uint64_t)p << 8) | (uint64_t)(k * 8 + i / 8);
        memcpy(out + i, &v, 8);
    }
}

static long mismatches;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static void report(const char *what, int w, long p) {
    pthread_mutex_lock(&report_lock);
    if (mismatches < 20)
        printf("round %u (%s): %s: writer %d page %ld\n", round_no, prep_name, what, w, p);
    mismatches++;
    pthread_mutex_unlock(&report_lock);
}

struct writer { int id; enum path path; };

/* Pages in a per-writer pseudo-random order, so writers meet on pages. */
static long page_order(int w, int k, long i) { return (i * 97 + w * 31 + k * 53) % PAGES; }

static void *run_writer(void *arg) {
    const struct writer *wr = arg;
    int own_fd = -1;
    unsigned char *own_map = NULL;
    if (wr->path == PWRITE_OWN_FD || wr->path == STORE_OWN_MAP) {
        own_fd = open(file_path, O_RDWR);
        if (own_fd < 0) die("open own fd");
        own_map = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, own_fd, 0);
        if (own_map == MAP_FAILED) die("mmap own");
    }
    unsigned char value[SLOT], back[SLOT];
    for (int k = 0; k < PASSES; k++) {
        for (long i = 0; i < PAGES; i++) {
            long p = page_order(wr->id, k, i);
            long off = p * PAGE + SLOT_BASE + (long)wr->id * SLOT;
            slot_value(value, wr->id, p, k);
            switch (wr->path) {
            case PWRITE_SHARED_FD:
                if (pwrite(shared_fd, value, SLOT, off) != SLOT) die("pwrite");
                /* Read back through the mapping: must show the write. */
                memcpy(back, shared_map + off, SLOT);
                break;
            case PWRITE_OWN_FD:
                if (pwrite(own_fd, value, SLOT, off) != SLOT) die("pwrite own");
                memcpy(back, own_map + off, SLOT);
                break;
            case STORE_SHARED_MAP:
                memcpy(shared_map + off, value, SLOT);
                /* Read back through the file: must show the store. */
                if (pread(shared_fd, back, SLOT, off) != SLOT) die("pread");
                break;
            case STORE_OWN_MAP:
                memcpy(own_map + off, value, SLOT);
                if (pread(own_fd, back, SLOT, off) != SLOT) die("pread own");
                break;
            }
            if (memcmp(back, value, SLOT) != 0)
                report("read back through another path differs", wr->id, p);
        }
    }
    if (own_map) {
        if (msync(own_map, FILE_SIZE, MS_SYNC)) die("msync own");
        munmap(own_map, FILE_SIZE);
        close(own_fd);
    }
    return NULL;
}

/* The O_DIRECT writer: 512-byte aligned blocks at the start of each page. */
static void *run_direct_writer(void *arg) {
    (void)arg;
    int fd = open(file_path, O_RDWR | O_DIRECT);
    if (fd < 0) die("open O_DIRECT");
    unsigned char *block;
    if (posix_memalign((void **)&block, 4096, DIRECT_BLOCK)) die("posix_memalign");
    for (int k = 0; k < PASSES; k++) {
        for (long i = 0; i < PAGES; i++) {
            long p = page_order(15, k, i);
            for (int j = 0; j < DIRECT_BLOCK; j += SLOT) slot_value(block + j, 15, p, k);
            if (pwrite(fd, block, DIRECT_BLOCK, p * PAGE) != DIRECT_BLOCK) die("pwrite O_DIRECT");
            if (memcmp(shared_map + p * PAGE, block, DIRECT_BLOCK) != 0)
                report("O_DIRECT write not visible through the mapping", 15, p);
        }
    }
    free(block);
    close(fd);
    return NULL;
}

#define THREAD_WRITERS 4
#define PROCESS_WRITERS 2
static const struct writer thread_writers[THREAD_WRITERS] = {
    {0, PWRITE_SHARED_FD}, {1, STORE_SHARED_MAP}, {2, PWRITE_OWN_FD}, {3, STORE_OWN_MAP},
};
static const struct writer process_writers[PROCESS_WRITERS] = {
    {4, PWRITE_OWN_FD}, {5, STORE_OWN_MAP},
};
#define WRITERS (THREAD_WRITERS + PROCESS_WRITERS)

/* The plain case: one pwrite thread, one store thread, 8-byte markers. */
static uint64_t pair_marker(int who, long p) {
    return ((uint64_t)(0xA0 + who) << 56) | ((uint64_t)round_no << 24) | (uint64_t)p;
}
static void *pair_pwrite(void *arg) {
    (void)arg;
    for (long p = 0; p < PAGES; p++) {
        uint64_t m = pair_marker(0, p);
        if (pwrite(shared_fd, &m, 8, p * PAGE + 1024) != 8) die("pair pwrite");
    }
    return NULL;
}
static void *pair_store(void *arg) {
    (void)arg;
    for (long p = 0; p < PAGES; p++) {
        uint64_t m = pair_marker(1, p);
        memcpy(shared_map + p * PAGE + 3072, &m, 8);
    }
    return NULL;
}
static void run_pair(void) {
    pthread_t a, b;
    if (pthread_create(&a, NULL, pair_pwrite, NULL) || pthread_create(&b, NULL, pair_store, NULL))
        die("pthread_create");
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    if (msync(shared_map, FILE_SIZE, MS_SYNC)) die("msync");
    for (long p = 0; p < PAGES; p++) {
        uint64_t got;
        if (pread(shared_fd, &got, 8, p * PAGE + 1024) != 8) die("pread");
        if (got != pair_marker(0, p)) report("pair: pwrite marker lost", 0, p);
        if (pread(shared_fd, &got, 8, p * PAGE + 3072) != 8) die("pread");
        if (got != pair_marker(1, p)) report("pair: store marker lost", 1, p);
    }
}

static void model(unsigned char *expect, int prep) {
    for (long off = 0; off < FILE_SIZE; off++) expect[off] = prep == 2 ? fill_byte(off) : 0;
    for (long p = 0; p < PAGES; p++) {
        for (int j = 0; j < DIRECT_BLOCK; j += SLOT) slot_value(expect + p * PAGE + j, 15, p, PASSES - 1);
        for (int w = 0; w < WRITERS; w++)
            slot_value(expect + p * PAGE + SLOT_BASE + w * SLOT, w, p, PASSES - 1);
        uint64_t m = pair_marker(0, p);
        memcpy(expect + p * PAGE + 1024, &m, 8);
        m = pair_marker(1, p);
        memcpy(expect + p * PAGE + 3072, &m, 8);
    }
}

static void compare(const char *how, const unsigned char *got, const unsigned char *expect) {
    for (long p = 0; p < PAGES; p++) {
        if (memcmp(got + p * PAGE, expect + p * PAGE, PAGE) == 0) continue;
        for (long off = p * PAGE; off < (p + 1) * PAGE; off++) {
            if (got[off] != expect[off]) {
                long in_page = off % PAGE;
                int w = in_page < SLOT_BASE ? 15
                        : in_page < SLOT_BASE + WRITERS * SLOT ? (int)((in_page - SLOT_BASE) / SLOT)
                        : -1;
                char what[96];
                snprintf(what, sizeof what, "%s: byte %ld differs from the model", how, off);
                report(what, w, p);
                off = (off / SLOT + 1) * SLOT - 1; /* one report per slot */
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mmap_io_mix PATH ROUNDS\n");
        return 2;
    }
    file_path = argv[1];
    int rounds = atoi(argv[2]);
    unsigned char *expect = malloc(FILE_SIZE), *got = malloc(FILE_SIZE);
    if (!expect || !got) die("malloc");
    const char *preps[3] = {"sparse", "preallocated", "written"};
    for (round_no = 1; round_no <= (uint32_t)rounds; round_no++) {
        int prep = (int)(round_no % 3);
        snprintf(prep_name, sizeof prep_name, "%s", preps[prep]);
        unlink(file_path);
        shared_fd = open(file_path, O_RDWR | O_CREAT | O_EXCL, 0644);
        if (shared_fd < 0) die("create");
        if (prep == 0) {
            if (ftruncate(shared_fd, FILE_SIZE)) die("ftruncate");
        } else if (prep == 1) {
            int err = posix_fallocate(shared_fd, 0, FILE_SIZE);
            if (err) { errno = err; die("posix_fallocate"); }
        } else {
            for (long off = 0; off < FILE_SIZE; off++) got[off] = fill_byte(off);
            if (pwrite(shared_fd, got, FILE_SIZE, 0) != FILE_SIZE) die("fill");
        }
        shared_map = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, shared_fd, 0);
        if (shared_map == MAP_FAILED) die("mmap");
        run_pair();
        fflush(stdout);
        pid_t children[PROCESS_WRITERS];
        for (int c = 0; c < PROCESS_WRITERS; c++) {
            children[c] = fork();
            if (children[c] < 0) die("fork");
            if (children[c] == 0) {
                mismatches = 0; /* count only what this process sees */
                run_writer((void *)&process_writers[c]);
                fflush(stdout);
                _exit(mismatches ? 1 : 0);
            }
        }
        pthread_t threads[THREAD_WRITERS + 1];
        for (int t = 0; t < THREAD_WRITERS; t++)
            if (pthread_create(&threads[t], NULL, run_writer, (void *)&thread_writers[t])) die("pthread_create");
        if (pthread_create(&threads[THREAD_WRITERS], NULL, run_direct_writer, NULL)) die("pthread_create");
        for (int t = 0; t <= THREAD_WRITERS; t++) pthread_join(threads[t], NULL);
        for (int c = 0; c < PROCESS_WRITERS; c++) {
            int status;
            if (waitpid(children[c], &status, 0) < 0) die("waitpid");
            if (!WIFEXITED(status) || WEXITSTATUS(status) == 2) { fprintf(stderr, "writer process failed\n"); return 2; }
            if (WEXITSTATUS(status) == 1) report("a writer process saw a mismatch", process_writers[c].id, -1);
        }
        if (msync(shared_map, FILE_SIZE, MS_SYNC)) die("msync");
        model(expect, prep);
        /* The whole file, three ways. */
        compare("mapping", shared_map, expect);
        munmap(shared_map, FILE_SIZE);
        if (pread(shared_fd, got, FILE_SIZE, 0) != FILE_SIZE) die("pread all");
        compare("pread", got, expect);
        close(shared_fd);
        int ro = open(file_path, O_RDONLY);
        if (ro < 0) die("open read-only");
        if (pread(ro, got, FILE_SIZE, 0) != FILE_SIZE) die("pread read-only");
        compare("read-only open", got, expect);
        unsigned char *fresh = mmap(NULL, FILE_SIZE, PROT_READ, MAP_SHARED, ro, 0);
        if (fresh == MAP_FAILED) die("mmap read-only");
        compare("fresh mapping", fresh, expect);
        munmap(fresh, FILE_SIZE);
        close(ro);
    }
    printf("%ld mismatches in %d rounds\n", mismatches, rounds);
    return mismatches ? 1 : 0;
}
