#include "base/mapfile.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int duet_map_file(const char *path, void **map, size_t *size, struct duet_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return duet_errnof(err, "%s: cannot open", path);
	struct stat st;
	if (fstat(fd, &st)) {
		close(fd);
		return duet_errnof(err, "%s: cannot stat", path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return duet_errf(err, "%s: not a regular file", path);
	}
	if (st.st_size == 0) {
		close(fd);
		return duet_errf(err, "%s: file is empty", path);
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return duet_errnof(err, "%s: cannot map %lld bytes", path, (long long)st.st_size);
	*map = p;
	*size = (size_t)st.st_size;
	return 0;
}

void duet_unmap_file(void *map, size_t size)
{
	if (map)
		munmap(map, size);
}
