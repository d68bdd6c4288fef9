/*
 * metabench: the metadata job of the cowdax benchmark harness.
 *
 * Creates COUNT files of FILE_BYTES each in a fresh directory DIR/meta
 * (open O_CREAT|O_EXCL + one write + close), then stats each of them, then
 * unlinks each of them, and prints one JSON object with the wall time and
 * rate of each phase. Each phase is one system-call pattern per file, so the
 * rates compare the per-operation cost of the targets (for FUSE targets: the
 * round trips each phase needs). stat runs right after create, so it sees
 * whatever attribute/dentry caching the target keeps: that is part of what is
 * measured.
 *
 * Usage: metabench DIR COUNT FILE_BYTES
 *        metabench --populate DIR COUNT FILE_BYTES
 * The --populate form only creates the files and keeps them, 10,000 per
 * subdirectory DIR/pNNNNN (for the mount-time test of tools/bench/mount_scale.sh).
 * Exit status: 0 on success, 1 on bad usage, 2 when a system call fails (the
 * failing call and file are printed on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *call, const char *path)
{
	fprintf(stderr, "metabench: %s %s: %s\n", call, path, strerror(errno));
	return 2;
}

static int parse_count(const char *text, long max, long *value)
{
	char *end = NULL;
	errno = 0;
	long parsed = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || parsed <= 0 || parsed > max)
		return -1;
	*value = parsed;
	return 0;
}

/* Writes one new file of file_bytes bytes at path. Returns 0 or fail()'s code. */
static int create_file(const char *path, const char *payload, long file_bytes)
{
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (fd < 0)
		return fail("open", path);
	ssize_t written = write(fd, payload, (size_t)file_bytes);
	if (written != file_bytes) {
		if (written >= 0)
			errno = EIO;
		close(fd);
		return fail("write", path);
	}
	if (close(fd) != 0)
		return fail("close", path);
	return 0;
}

/* Files per subdirectory in --populate mode: keeps directories small enough
 * that no target is measured on huge-directory behaviour. */
#define POPULATE_FILES_PER_DIR 10000

static int populate(const char *root, long file_count, const char *payload, long file_bytes)
{
	char path[4200];
	double start = now_seconds();
	for (long i = 0; i < file_count; i++) {
		long dir_index = i / POPULATE_FILES_PER_DIR;
		if (i % POPULATE_FILES_PER_DIR == 0) {
			snprintf(path, sizeof path, "%s/p%05ld", root, dir_index);
			if (mkdir(path, 0755) != 0)
				return fail("mkdir", path);
		}
		snprintf(path, sizeof path, "%s/p%05ld/f%07ld", root, dir_index, i);
		int status = create_file(path, payload, file_bytes);
		if (status != 0)
			return status;
	}
	double seconds = now_seconds() - start;
	printf("{\"files\": %ld, \"file_bytes\": %ld, \"create_seconds\": %.6f, "
	       "\"create_per_second\": %.1f}\n",
	       file_count, file_bytes, seconds, (double)file_count / seconds);
	return 0;
}

int main(int argc, char **argv)
{
	long file_count = 0;
	long file_bytes = 0;
	int populate_only = argc == 5 && strcmp(argv[1], "--populate") == 0;
	if (populate_only) {
		argv++;
		argc--;
	}
	if (argc != 4 || parse_count(argv[2], 10000000, &file_count) != 0 ||
	    parse_count(argv[3], 1 << 20, &file_bytes) != 0) {
		fprintf(stderr, "usage: metabench [--populate] DIR COUNT(1..10000000) FILE_BYTES(1..1048576)\n");
		return 1;
	}

	if (populate_only) {
		char *payload = malloc((size_t)file_bytes);
		if (payload == NULL) {
			fprintf(stderr, "metabench: out of memory\n");
			return 2;
		}
		memset(payload, 0x5a, (size_t)file_bytes);
		int status = populate(argv[1], file_count, payload, file_bytes);
		free(payload);
		return status;
	}

	char dir_path[4096];
	if (snprintf(dir_path, sizeof dir_path, "%s/meta", argv[1]) >= (int)sizeof dir_path) {
		fprintf(stderr, "metabench: directory path too long\n");
		return 1;
	}
	if (mkdir(dir_path, 0755) != 0)
		return fail("mkdir", dir_path);

	char *payload = malloc((size_t)file_bytes);
	if (payload == NULL) {
		fprintf(stderr, "metabench: out of memory\n");
		return 2;
	}
	memset(payload, 0x5a, (size_t)file_bytes);

	char path[4200];
	double start = now_seconds();
	for (long i = 0; i < file_count; i++) {
		snprintf(path, sizeof path, "%s/f%07ld", dir_path, i);
		int status = create_file(path, payload, file_bytes);
		if (status != 0)
			return status;
	}
	double create_seconds = now_seconds() - start;

	start = now_seconds();
	for (long i = 0; i < file_count; i++) {
		struct stat st;
		snprintf(path, sizeof path, "%s/f%07ld", dir_path, i);
		if (stat(path, &st) != 0)
			return fail("stat", path);
		if (st.st_size != file_bytes) {
			fprintf(stderr, "metabench: %s has size %lld, expected %ld\n", path,
				(long long)st.st_size, file_bytes);
			return 2;
		}
	}
	double stat_seconds = now_seconds() - start;

	start = now_seconds();
	for (long i = 0; i < file_count; i++) {
		snprintf(path, sizeof path, "%s/f%07ld", dir_path, i);
		if (unlink(path) != 0)
			return fail("unlink", path);
	}
	double unlink_seconds = now_seconds() - start;

	if (rmdir(dir_path) != 0)
		return fail("rmdir", dir_path);
	free(payload);

	printf("{\"files\": %ld, \"file_bytes\": %ld, "
	       "\"create_seconds\": %.6f, \"stat_seconds\": %.6f, \"unlink_seconds\": %.6f, "
	       "\"create_per_second\": %.1f, \"stat_per_second\": %.1f, \"unlink_per_second\": %.1f}\n",
	       file_count, file_bytes, create_seconds, stat_seconds, unlink_seconds,
	       (double)file_count / create_seconds, (double)file_count / stat_seconds,
	       (double)file_count / unlink_seconds);
	return 0;
}
