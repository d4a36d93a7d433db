//! Progress lines: a spinner on a terminal, plain lines in CI.

use std::io::IsTerminal;

pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub fn new() -> Progress {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Progress(tty.then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            pb
        }))
    }

    pub fn step(&self, msg: String) {
        match &self.0 {
            Some(pb) => pb.set_message(msg),
            None => eprintln!("{msg}"),
        }
    }

    pub fn done(&self, msg: String) {
        match &self.0 {
            Some(pb) => pb.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
