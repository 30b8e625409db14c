//! Scrapes of `/metrics` this worker took and passed to the master: each waits, by the id its
//! request to the master carried, for the text the master renders for the whole cluster.

use std::collections::HashMap;

use tokio::sync::oneshot;

/// Where the text of one scrape goes (`None`: the master could not send it).
pub type MetricsAsk = oneshot::Sender<Option<String>>;

/// Most scrapes waiting at once; more are answered 503 at once.
const MAX_WAITING: usize = 64;

#[derive(Default)]
pub struct Scrapes {
    next: u64,
    waiting: HashMap<u64, MetricsAsk>,
}

impl Scrapes {
    /// Keeps `ask` until its answer; the id to ask the master with (`None`: too many wait).
    pub fn add(&mut self, ask: MetricsAsk) -> Option<u64> {
        // A scrape that gave up waiting leaves its entry: forget those first.
        self.waiting.retain(|_, ask| !ask.is_closed());
        if self.waiting.len() >= MAX_WAITING {
            let _ = ask.send(None);
            return None;
        }
        self.next += 1;
        self.waiting.insert(self.next, ask);
        Some(self.next)
    }

    /// The master's answer to scrape `id`.
    pub fn answer(&mut self, id: u64, text: Option<String>) {
        if let Some(ask) = self.waiting.remove(&id) {
            let _ = ask.send(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_reaches_its_own_scrape() {
        let mut scrapes = Scrapes::default();
        let (a, mut a_text) = oneshot::channel();
        let (b, mut b_text) = oneshot::channel();
        let a_id = scrapes.add(a).unwrap();
        let b_id = scrapes.add(b).unwrap();
        scrapes.answer(b_id, Some("b".into()));
        scrapes.answer(a_id, None);
        assert_eq!(b_text.try_recv().unwrap(), Some("b".into()));
        assert_eq!(a_text.try_recv().unwrap(), None);
        scrapes.answer(a_id, Some("late".into())); // answered already: nothing happens
    }

    #[test]
    fn abandoned_scrapes_do_not_pile_up() {
        let mut scrapes = Scrapes::default();
        for _ in 0..MAX_WAITING * 2 {
            let (ask, text) = oneshot::channel();
            drop(text); // the scrape timed out
            assert!(scrapes.add(ask).is_some());
        }
        assert!(scrapes.waiting.len() <= 1);
    }
}
