/*
 * MPI's process-wide state, all of it: MPI belongs to the process, not to
 * a pool. Whether we initialised it (then we finalise it at exit, never
 * when a pool closes: MPI cannot be initialised twice), the thread level
 * it gives, the lock that serialises calls below MPI_THREAD_MULTIPLE, and
 * how many maps are running (finalising under a running map would hang
 * the job). Also the one place MPI error codes become MH_E* codes.
 */
#include <pthread.h>
#include <stdlib.h>

#include "mpi_int.h"

static pthread_mutex_t mpi_init_lock = PTHREAD_MUTEX_INITIALIZER; /* guards
                                        * the init and atexit registration */
static int mpi_we_initialised;         /* under mpi_init_lock */
/* MPI's thread level: written under mpi_init_lock by every open, read by
 * maps on any thread (relaxed: it is set once MPI starts and never
 * changes after, so a reader sees that value or none is running). */
static atomic_int mpi_thread_level = MPI_THREAD_SINGLE;
/* Below MPI_THREAD_MULTIPLE, every MPI call of the library is made under
 * this lock, so that calls from several threads are serialised. */
static pthread_mutex_t mpi_serial_lock = PTHREAD_MUTEX_INITIALIZER;
/* Maps in flight in this process (relaxed: read only by the exit hook,
 * after the threads that count have stopped or are stuck in a map). */
static atomic_int mpi_maps_running;

/* Whether MPI is up: initialised and not finalised. */
static bool mpi_is_up(void)
{
    int initialised = 0, finalised = 1;
    return MPI_Initialized(&initialised) == MPI_SUCCESS && initialised &&
           MPI_Finalized(&finalised) == MPI_SUCCESS && !finalised;
}

int mh__mpi_code(int mpi_err)
{
    if (mpi_err == MPI_SUCCESS)
        return MH_OK;
    /* MPI_Error_class is called only while MPI is up: outside it, Open
     * MPI may treat the call itself as fatal. */
    int cls = MPI_ERR_OTHER;
    if (mpi_is_up() && MPI_Error_class(mpi_err, &cls) != MPI_SUCCESS)
        cls = MPI_ERR_OTHER;
    return cls == MPI_ERR_NO_MEM ? MH_ENOMEM : MH_EMPI;
}

/* The exit hook, registered by the open that initialised MPI. */
static void mpi_atexit(void)
{
    /* A map still running (exit from inside a callback, or from another
     * thread) would wait in MPI_Finalize for peers that wait for this
     * rank's results: leave MPI unfinalised, and the runtime ends the job
     * with an error instead of hanging. */
    if (mpi_is_up() && atomic_load_explicit(&mpi_maps_running, memory_order_relaxed) == 0)
        MPI_Finalize();
}

/* Initialise MPI unless the caller has; learn its thread level. Called
 * under mpi_init_lock. */
static int mpi_init_locked(void)
{
    int initialised = 0, finalised = 0, level;
    int rc = mh__mpi_code(MPI_Initialized(&initialised));
    if (!rc)
        rc = mh__mpi_code(MPI_Finalized(&finalised));
    if (rc || finalised)
        return MH_EMPI; /* MPI cannot start again once finalised */
    if (initialised) {
        if ((rc = mh__mpi_code(MPI_Query_thread(&level))))
            return rc;
        atomic_store_explicit(&mpi_thread_level, level, memory_order_relaxed);
        return MH_OK;
    }
    if ((rc = mh__mpi_code(MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &level))))
        return rc;
    atomic_store_explicit(&mpi_thread_level, level, memory_order_relaxed);
    /* MPI_COMM_WORLD is ours now: errors on it (MPI_Comm_dup) come back
     * as codes instead of ending the process. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (!mpi_we_initialised) {
        mpi_we_initialised = 1;
        if (atexit(mpi_atexit) != 0)
            return MH_ENOMEM; /* MPI stays up; the runtime reports it at exit */
    }
    return MH_OK;
}

/* Whether this thread may call MPI now (FUNNELED: the main thread only). */
static int mpi_thread_check(void)
{
    if (atomic_load_explicit(&mpi_thread_level, memory_order_relaxed) >= MPI_THREAD_SERIALIZED)
        return MH_OK;
    int is_main = 0;
    int rc = mh__mpi_code(MPI_Is_thread_main(&is_main));
    if (rc)
        return rc;
    return is_main ? MH_OK : MH_ENOTSUP;
}

int mh__mpi_runtime_start(void)
{
    pthread_mutex_lock(&mpi_init_lock);
    int rc = mpi_init_locked();
    pthread_mutex_unlock(&mpi_init_lock);
    return rc ? rc : mpi_thread_check();
}

void mh__mpi_serial_enter(void)
{
    if (atomic_load_explicit(&mpi_thread_level, memory_order_relaxed) < MPI_THREAD_MULTIPLE)
        pthread_mutex_lock(&mpi_serial_lock);
}

void mh__mpi_serial_leave(void)
{
    if (atomic_load_explicit(&mpi_thread_level, memory_order_relaxed) < MPI_THREAD_MULTIPLE)
        pthread_mutex_unlock(&mpi_serial_lock);
}

int mh__mpi_map_begin(void)
{
    int rc = mpi_thread_check();
    if (rc)
        return rc;
    atomic_fetch_add_explicit(&mpi_maps_running, 1, memory_order_relaxed);
    mh__mpi_serial_enter();
    return MH_OK;
}

void mh__mpi_map_end(void)
{
    mh__mpi_serial_leave();
    atomic_fetch_sub_explicit(&mpi_maps_running, 1, memory_order_relaxed);
}
