/* Error codes and item statuses as text, from the one X-macro list. */
#include "internal.h"

const char *mh_strerror(int code)
{
    switch (code) {
    case MH_OK:
        return "success";
#define MH_STRERROR_CASE_(name, value, msg) \
    case MH_##name:                         \
        return msg;
        MH_ERRNO_MAP(MH_STRERROR_CASE_)
#undef MH_STRERROR_CASE_
    }
    return "unknown error";
}

const char *mh_err_name(int code)
{
    switch (code) {
    case MH_OK:
        return "MH_OK";
#define MH_ERR_NAME_CASE_(name, value, msg) \
    case MH_##name:                         \
        return "MH_" #name;
        MH_ERRNO_MAP(MH_ERR_NAME_CASE_)
#undef MH_ERR_NAME_CASE_
    }
    return "MH_UNKNOWN";
}

const char *mh_item_status_name(int status)
{
    switch (status) {
    case MH_ITEM_NOT_RUN:
        return "not run";
    case MH_ITEM_OK:
        return "ok";
    case MH_ITEM_FAILED:
        return "failed";
    case MH_ITEM_CRASHED:
        return "crashed";
    case MH_ITEM_TIMED_OUT:
        return "timed out";
    case MH_ITEM_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

int mh__status_code(int item_status)
{
    switch (item_status) {
    case MH_ITEM_OK:
        return MH_OK;
    case MH_ITEM_FAILED:
        return MH_ECALLBACK;
    case MH_ITEM_CRASHED:
        return MH_EWORKER;
    case MH_ITEM_TIMED_OUT:
        return MH_ETIMEDOUT;
    case MH_ITEM_CANCELLED:
        return MH_EINTR;
    }
    return MH_EINVAL;
}

const char *mh_version(void)
{
    return MH_VERSION_STRING;
}
