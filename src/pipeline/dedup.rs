//! Deduplication: what a received alert means given what is already known of its fingerprint.
//! Pure; the record itself is kept by the writer and stored by `store`.

use crate::alert::{AlertRecord, Status};

/// What one received alert is, relative to its fingerprint's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Firing, and nothing of this fingerprint is firing: it opens or joins an incident.
    Fires,
    /// Firing again while already firing: a repeat (count and last-seen move, nothing opens).
    Repeats,
    /// Resolved while firing: its membership resolves.
    Resolves,
    /// Resolved while not firing (a repeat of a resolution, or of an alert never seen firing).
    AlreadyResolved,
}

pub fn observe(previous: Option<&AlertRecord>, status: Status) -> Seen {
    let firing = previous.is_some_and(|r| r.status == Status::Firing);
    match (status, firing) {
        (Status::Firing, false) => Seen::Fires,
        (Status::Firing, true) => Seen::Repeats,
        (Status::Resolved, true) => Seen::Resolves,
        (Status::Resolved, false) => Seen::AlreadyResolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Fingerprint;

    fn record(status: Status) -> AlertRecord {
        AlertRecord::sample(Fingerprint(1), status, Default::default())
    }

    #[test]
    fn repeats_are_recognised_by_the_previous_status() {
        assert_eq!(observe(None, Status::Firing), Seen::Fires);
        assert_eq!(observe(None, Status::Resolved), Seen::AlreadyResolved);
        let firing = record(Status::Firing);
        assert_eq!(observe(Some(&firing), Status::Firing), Seen::Repeats);
        assert_eq!(observe(Some(&firing), Status::Resolved), Seen::Resolves);
        let resolved = record(Status::Resolved);
        assert_eq!(observe(Some(&resolved), Status::Firing), Seen::Fires);
        assert_eq!(
            observe(Some(&resolved), Status::Resolved),
            Seen::AlreadyResolved
        );
    }
}
