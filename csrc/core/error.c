/* Status messages (thread-local, so OpenMP workers and future server threads do
 * not overwrite each other's errors) and the logger. */
#include "qbert/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define QB_ERR_CAP 1024
static _Thread_local char err_msg[QB_ERR_CAP];

qb_status qb_fail(qb_status code, const char *fmt, ...)
{
    /* Formatted apart first: an argument may be qb_error() itself. */
    char msg[QB_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(err_msg, msg, sizeof msg);
    return code;
}

qb_status qb_fail_context(qb_status code, const char *fmt, ...)
{
    char prefix[QB_ERR_CAP], old[QB_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    snprintf(err_msg, sizeof err_msg, "%.400s: %.600s", prefix, old);
    return code;
}

const char *qb_error(void) { return err_msg[0] ? err_msg : "no error"; }

const char *qb_status_name(qb_status s)
{
    switch (s) {
    case QB_OK: return "ok";
    case QB_EINVAL: return "invalid argument";
    case QB_EIO: return "I/O error";
    case QB_EFORMAT: return "bad format";
    case QB_ENOMEM: return "out of memory";
    case QB_EUNSUPPORTED: return "unsupported";
    case QB_ENOTFOUND: return "not found";
    case QB_ENUMERIC: return "non-finite value";
    case QB_EINTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

static qb_log_level log_level = QB_LOG_INFO;

void qb_log_set_level(qb_log_level level) { log_level = level; }
qb_log_level qb_log_get_level(void) { return log_level; }

void qb_log(qb_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    if (level < log_level || level >= QB_LOG_QUIET) return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "qbert: %s: %s\n", names[level], line);
}
