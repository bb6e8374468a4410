//! The one thread that forks every instance.
//!
//! Linux delivers the parent-death signal when the *thread* that forked a child exits, not when
//! the process does. Tokio runs `spawn` on whatever worker thread polls the future, and blocking
//! threads come and go, so an instance started there would be SIGKILLed the moment that thread
//! retired. All forks therefore happen on a dedicated thread that lives as long as valet.

use nix::sys::signal::Signal;
use nix::unistd::{getppid, Pid};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::OnceLock;
use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

struct Request {
    command: Command,
    /// The runtime that will own the child's reaping (its SIGCHLD or pidfd registration).
    runtime: Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Process-wide rather than per driver: a driver may be dropped while its instances run on,
/// and ending this thread would kill all of them.
static SPAWNER: OnceLock<io::Result<mpsc::Sender<Request>>> = OnceLock::new();

/// Spawns `command` on the spawner thread, with the parent-death signal set to SIGKILL so
/// the instance cannot outlive valet.
pub(super) async fn spawn(mut command: Command) -> io::Result<Child> {
    set_parent_death_signal(&mut command);
    let sender = SPAWNER
        .get_or_init(start_thread)
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start the spawner thread: {e}")))?;
    let (reply, answer) = oneshot::channel();
    let request = Request {
        command,
        runtime: Handle::current(),
        reply,
    };
    sender
        .send(request)
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("spawning panicked"))?
}

fn start_thread() -> io::Result<mpsc::Sender<Request>> {
    let (sender, requests) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("valet-spawner".into())
        .spawn(move || serve(requests))?;
    Ok(sender)
}

fn serve(requests: mpsc::Receiver<Request>) {
    for request in requests {
        // A panic here must not end the thread: every instance it forked would die with it.
        let _ = catch_unwind(AssertUnwindSafe(|| handle(request)));
    }
}

fn handle(mut request: Request) {
    // Inside the runtime until the reply is sent: if the caller has given up (its future was
    // dropped), the child is dropped right here, and kill_on_drop hands it to that runtime.
    let _runtime = request.runtime.enter();
    let spawned = request.command.spawn();
    let _ = request.reply.send(spawned);
}

fn set_parent_death_signal(command: &mut Command) {
    let valet = Pid::this();
    let hook = move || -> io::Result<()> {
        // A session of its own, which also makes it the leader of a new process group. A
        // process may join any group of its own session (setpgid), so instances in valet's
        // session could join each other's groups and pass the port check in listeners.rs;
        // across sessions setpgid fails with EPERM.
        nix::unistd::setsid()?;
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        // valet turns transparent huge pages off for itself (see main.rs); the flag would be
        // inherited across exec, and an instance's own memory is the app's business.
        nix::sys::prctl::set_thp_disable(false)?;
        // valet may have died between fork and prctl, in which case the signal will never
        // come: give up rather than run unsupervised.
        if getppid() != valet {
            return Err(nix::errno::Errno::ESRCH.into());
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes raw syscalls only (setsid, prctl twice, getppid) and on failure builds an
    // io::Error from an errno, which does not allocate; it takes no locks.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(hook);
    }
}
