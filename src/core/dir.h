/* Directories flowgate keeps its own files in (server data, agent state,
 * ctl credentials). */
#ifndef FG_CORE_DIR_H
#define FG_CORE_DIR_H

/* mkdir -p: missing parents get 0755, dir itself 0700. A dir that exists,
 * belongs to us and is open to others is narrowed to 0700: it holds
 * tokens and keys. Returns 0 or -errno (errno names the step). */
int fg_dir_make(const char *dir);

#endif
