//! What the store keeps of its own latest writes, so that the next commits need not read them
//! back from sled: the incidents it last wrote, decoded, and each incident's `member/` value
//! that is still open to more members.
//!
//! Both matter in a storm of new alerts. Each new alert joins its group's incident: the writer
//! read the incident back (a sled read and a JSON decode: 13 % of the writer at 1 × 100,000, a
//! new alert per request) and wrote a new `member/` value for it, a new sled key per alert at
//! one alert per request (sled's cost and memory grow with its keys; splitting its nodes was
//! 15 % of the writer). Now an incident written is read back from here, and a commit adds its
//! members to the incident's latest value while that holds fewer than [`OPEN_MEMBERS`]; only
//! then does a new value (key) start.
//!
//! Filled by [`Store::commit`](super::Store::commit) only once a commit is durable and applied
//! (under the store's write lock), so it never holds what sled does not; it lives in the open
//! [`Handle`](super::Handle), so closing the store (a failed commit) forgets it, and a start
//! begins empty. Bounded: past its size, an entry is dropped to make room (the next read of
//! that incident goes to sled; the next member of that incident starts a new value).

use crate::alert::{FastMap, Fingerprint};
use crate::incident::{Incident, IncidentId};

/// Incidents kept decoded. An incident in memory is about 1–2 KB.
const INCIDENTS: usize = 1024;
/// Open `member/` values tracked (at most [`OPEN_MEMBERS`] fingerprints each).
const MEMBER_VALUES: usize = 4096;
/// Members a `member/` value takes before a new one starts: each addition rewrites the value,
/// so this bounds the bytes a commit writes per incident (8 per member) against the keys a
/// storm creates (one per this many members of an incident).
pub(super) const OPEN_MEMBERS: usize = 64;

/// An incident's latest `member/` value, while it has room.
#[derive(Debug, Clone)]
pub(super) struct OpenMembers {
    pub key: Vec<u8>,
    pub fps: Vec<Fingerprint>,
}

#[derive(Default)]
pub(super) struct Hot {
    incidents: FastMap<IncidentId, Incident>,
    members: FastMap<IncidentId, OpenMembers>,
}

impl Hot {
    pub fn incident(&self, id: IncidentId) -> Option<&Incident> {
        self.incidents.get(&id)
    }

    pub fn open_members(&self, id: IncidentId) -> Option<&OpenMembers> {
        self.members.get(&id)
    }

    /// A commit is durable and applied: remember the incidents it wrote, and where each
    /// incident it added members to has room for more (`None`: its latest value is full).
    pub fn committed(
        &mut self,
        incidents: Vec<Incident>,
        members: Vec<(IncidentId, Option<OpenMembers>)>,
    ) {
        for incident in incidents {
            insert_bounded(&mut self.incidents, incident.id, incident, INCIDENTS);
        }
        for (id, open) in members {
            match open {
                Some(open) => insert_bounded(&mut self.members, id, open, MEMBER_VALUES),
                None => {
                    self.members.remove(&id);
                }
            }
        }
    }
}

impl Hot {
    /// Incidents removed (retention): reads must no longer find them here.
    pub fn forget(&mut self, ids: &[IncidentId]) {
        for id in ids {
            self.incidents.remove(id);
            self.members.remove(id);
        }
    }
}

/// Insert, first dropping another entry if the map is full (whichever iteration meets first:
/// the keys are hashed with a per-process seed, so that is no particular one).
fn insert_bounded<V>(map: &mut FastMap<IncidentId, V>, id: IncidentId, value: V, bound: usize) {
    if map.len() >= bound && !map.contains_key(&id) {
        if let Some(&victim) = map.keys().next() {
            map.remove(&victim);
        }
    }
    map.insert(id, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_bounds_and_keeps_what_was_written_last() {
        let mut hot = Hot::default();
        let members = (0..MEMBER_VALUES as u64 + 10)
            .map(|n| {
                let open = OpenMembers {
                    key: n.to_be_bytes().to_vec(),
                    fps: vec![Fingerprint(n)],
                };
                (IncidentId(n), Some(open))
            })
            .collect();
        hot.committed(Vec::new(), members);
        assert_eq!(hot.members.len(), MEMBER_VALUES);
        let last = IncidentId(MEMBER_VALUES as u64 + 9);
        assert_eq!(hot.open_members(last).unwrap().fps, [Fingerprint(last.0)]);
        // A full value is forgotten, so the next member starts a new one.
        hot.committed(Vec::new(), vec![(last, None)]);
        assert!(hot.open_members(last).is_none());
    }
}
