//! Admission: the one owner of the worker's limits. It counts the claims each endpoint and
//! project has in hand and hands out a ticket per claim (released on drop). A ticket's turn is
//! a sending slot, granted only while the process, the endpoint (its adapted concurrency, and
//! any hold a throttling receiver asked for) and the project's fair share all have room; freed
//! slots go first to the project sending least, so one tenant's slow endpoints cannot take
//! every slot from the others.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::domain::{ProjectId, WebhookId};

/// An endpoint may hold this many times its concurrency in claims; the rest go back to the
/// queue, so claims waiting behind a slow endpoint cannot fill the worker.
const HELD_PER_SLOT: usize = 4;

/// One claim takes at most this many times an endpoint's concurrency from one webhook: enough
/// to keep its slots busy while the next claim runs, not so many that they wait long.
const CLAIMED_PER_SLOT: usize = 2;

/// A project that had claims this recently still counts for the fair shares, so a tenant
/// publishing now and then keeps its share between events.
const ACTIVE_WINDOW: Duration = Duration::from_secs(2);

pub struct Admission {
    max_in_flight: usize,
    /// An endpoint's concurrency when its webhook sets none.
    per_endpoint: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    endpoints: HashMap<WebhookId, Endpoint>,
    projects: HashMap<ProjectId, Project>,
    sending: usize,
    /// Turns waited for, oldest first.
    waiting: VecDeque<Waiter>,
}

struct Endpoint {
    project: ProjectId,
    claimed: usize,
    sending: usize,
    /// Attempts in flight allowed now: the webhook's maximum, adapted to its receiver.
    limit: usize,
    /// No attempt starts before this: a throttling receiver's hold.
    held_until: Option<Instant>,
}

impl Endpoint {
    /// Claims counted as load: up to the endpoint's own concurrency, so claims waiting behind
    /// a busy endpoint take no room from the others.
    fn load(&self) -> usize {
        self.claimed.min(self.limit)
    }
}

#[derive(Default)]
struct Project {
    load: usize,
    sending: usize,
    last_active: Option<Instant>,
}

impl Project {
    /// Whether the project counts for the fair shares now.
    fn active(&self, now: Instant) -> bool {
        self.load > 0
            || self.sending > 0
            || self.last_active.is_some_and(|t| now - t < ACTIVE_WINDOW)
    }
}

struct Waiter {
    webhook: WebhookId,
    granted: oneshot::Sender<()>,
}

/// One admitted claim; dropping it gives its place back.
pub struct Ticket {
    admission: Arc<Admission>,
    webhook: WebhookId,
}

/// The right to send one attempt now; dropping it frees the slot for the next waiter.
pub struct Turn {
    admission: Arc<Admission>,
    webhook: WebhookId,
}

impl Admission {
    pub fn new(max_in_flight: usize, per_endpoint: usize) -> Arc<Self> {
        Arc::new(Self {
            max_in_flight,
            per_endpoint,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many more claims the worker can usefully take.
    pub fn room(&self) -> usize {
        let state = self.lock();
        let load: usize = state.endpoints.values().map(Endpoint::load).sum();
        self.max_in_flight.saturating_sub(load)
    }

    /// Whether `project`'s new deliveries can be handed to this worker: the project is within
    /// its fair share, counting itself as active.
    pub fn has_room_for(&self, project: ProjectId) -> bool {
        let state = self.lock();
        let load = state.projects.get(&project).map_or(0, |p| p.load);
        load < self.share(&state, Some(project))
    }

    /// Most deliveries of one endpoint a claim should take.
    pub fn claims_per_endpoint(&self) -> u32 {
        u32::try_from(CLAIMED_PER_SLOT * self.per_endpoint).unwrap_or(u32::MAX)
    }

    /// Endpoints whose slots are all spoken for, or held back: a claim leaves them out.
    pub fn busy_endpoints(&self) -> Vec<WebhookId> {
        let now = Instant::now();
        self.lock()
            .endpoints
            .iter()
            .filter(|(_, e)| e.claimed >= e.limit || e.held_until.is_some_and(|t| t > now))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Projects holding their fair share of claims or more: a claim leaves them out.
    pub fn busy_projects(&self) -> Vec<ProjectId> {
        let state = self.lock();
        let share = self.share(&state, None);
        state
            .projects
            .iter()
            .filter(|(_, p)| p.load >= share && share < self.max_in_flight)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Each active project's share of the slots; all of them when one project is active.
    fn share(&self, state: &State, counting: Option<ProjectId>) -> usize {
        let now = Instant::now();
        let mut active = state.projects.values().filter(|p| p.active(now)).count();
        if counting.is_some_and(|p| !state.projects.get(&p).is_some_and(|p| p.active(now))) {
            active += 1;
        }
        self.max_in_flight.div_ceil(active.max(1))
    }

    /// A ticket for a claim on `webhook` of `project`, whose webhook allows `limit` attempts in
    /// flight now; `None` when that endpoint already holds as many claims as it may.
    pub fn admit(
        self: &Arc<Self>,
        webhook: WebhookId,
        project: ProjectId,
        limit: usize,
    ) -> Option<Ticket> {
        let mut state = self.lock();
        let endpoint = state.endpoints.entry(webhook).or_insert(Endpoint {
            project,
            claimed: 0,
            sending: 0,
            limit: limit.max(1),
            held_until: None,
        });
        // The claim carries the webhook's limit as it was read: the project's load follows
        // the change, so that it always sums its endpoints' loads.
        let before = endpoint.load();
        endpoint.limit = limit.max(1);
        let admitted = endpoint.claimed < HELD_PER_SLOT * endpoint.limit;
        if admitted {
            endpoint.claimed += 1;
        }
        let after = endpoint.load();
        let entry = state.projects.entry(project).or_default();
        entry.load = (entry.load + after).saturating_sub(before);
        if !admitted {
            return None;
        }
        entry.last_active = Some(Instant::now());
        Some(Ticket {
            admission: self.clone(),
            webhook,
        })
    }

    /// A webhook's flow as its latest recorded attempts left it: the adapted concurrency, and
    /// a hold until `held_for` from now when its receiver throttles.
    pub fn update_flow(
        self: &Arc<Self>,
        webhook: WebhookId,
        limit: usize,
        held_for: Option<Duration>,
    ) {
        let mut state = self.lock();
        let Some(endpoint) = state.endpoints.get_mut(&webhook) else {
            return;
        };
        let before = endpoint.load();
        endpoint.limit = limit.max(1);
        let after = endpoint.load();
        let project = endpoint.project;
        if let Some(wait) = held_for {
            self.hold(endpoint, wait);
        }
        if let Some(entry) = state.projects.get_mut(&project) {
            entry.load = (entry.load + after).saturating_sub(before);
        }
        self.grant(&mut state);
    }

    /// Holds back every attempt to an endpoint for `wait`, and wakes its waiters afterwards.
    fn hold(self: &Arc<Self>, endpoint: &mut Endpoint, wait: Duration) {
        let until = Instant::now() + wait;
        if endpoint.held_until.is_some_and(|t| t >= until) {
            return;
        }
        endpoint.held_until = Some(until);
        let admission = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            let mut state = admission.lock();
            admission.grant(&mut state);
        });
    }

    fn can_send(&self, state: &State, webhook: WebhookId, now: Instant) -> bool {
        state.sending < self.max_in_flight
            && Self::sending_of(state, webhook, now).is_some_and(|p| p < self.share(state, None))
    }

    /// How many attempts the webhook's project is sending, when the webhook itself may send
    /// (its endpoint has a free slot and is not held); `None` otherwise.
    fn sending_of(state: &State, webhook: WebhookId, now: Instant) -> Option<usize> {
        let endpoint = state.endpoints.get(&webhook)?;
        let free =
            endpoint.sending < endpoint.limit && endpoint.held_until.is_none_or(|t| t <= now);
        free.then(|| {
            state
                .projects
                .get(&endpoint.project)
                .map_or(0, |p| p.sending)
        })
    }

    fn start_sending(state: &mut State, webhook: WebhookId) {
        state.sending += 1;
        if let Some(endpoint) = state.endpoints.get_mut(&webhook) {
            endpoint.sending += 1;
            let project = endpoint.project;
            state.projects.entry(project).or_default().sending += 1;
        }
    }

    fn stop_sending(state: &mut State, webhook: WebhookId) {
        state.sending = state.sending.saturating_sub(1);
        if let Some(endpoint) = state.endpoints.get_mut(&webhook) {
            endpoint.sending = endpoint.sending.saturating_sub(1);
            let project = endpoint.project;
            if let Some(entry) = state.projects.get_mut(&project) {
                entry.sending = entry.sending.saturating_sub(1);
            }
        }
    }

    /// Gives free slots to waiters that may send now: first to the project sending least,
    /// within a project the longest waiting.
    fn grant(&self, state: &mut State) {
        let now = Instant::now();
        while state.sending < self.max_in_flight && !state.waiting.is_empty() {
            let share = self.share(state, None);
            // With one project every eligible waiter ranks alike: the oldest wins at once.
            let alone = state.projects.len() <= 1;
            let mut chosen: Option<(usize, usize)> = None;
            for (position, waiter) in state.waiting.iter().enumerate() {
                if waiter.granted.is_closed() {
                    continue;
                }
                let Some(sending) = Self::sending_of(state, waiter.webhook, now) else {
                    continue;
                };
                if sending < share && chosen.is_none_or(|(least, _)| sending < least) {
                    chosen = Some((sending, position));
                    if alone || sending == 0 {
                        break;
                    }
                }
            }
            let Some((_, position)) = chosen else {
                state.waiting.retain(|w| !w.granted.is_closed());
                return;
            };
            let waiter = state
                .waiting
                .remove(position)
                .expect("the chosen waiter is in the queue");
            Self::start_sending(state, waiter.webhook);
            if waiter.granted.send(()).is_err() {
                // The attempt stopped waiting (it was aborted): the slot is free again.
                Self::stop_sending(state, waiter.webhook);
            }
        }
    }

    fn release(&self, webhook: WebhookId) {
        let mut state = self.lock();
        let Some(endpoint) = state.endpoints.get_mut(&webhook) else {
            return;
        };
        let counted_as_load = endpoint.claimed <= endpoint.limit;
        endpoint.claimed = endpoint.claimed.saturating_sub(1);
        let project = endpoint.project;
        let idle = endpoint.claimed == 0 && endpoint.sending == 0;
        let held = endpoint.held_until.is_some_and(|t| t > Instant::now());
        if idle && !held {
            state.endpoints.remove(&webhook);
        }
        if counted_as_load {
            if let Some(entry) = state.projects.get_mut(&project) {
                entry.load = entry.load.saturating_sub(1);
            }
        }
        let now = Instant::now();
        let projects = state.projects.len();
        state.projects.retain(|_, p| p.active(now));
        if state.projects.len() < projects {
            // Fewer active projects: larger shares, which a waiter may now fit in.
            self.grant(&mut state);
        }
    }
}

impl Ticket {
    /// Sends now if the process, the endpoint and the project all have room and nobody is
    /// waiting ahead.
    pub fn try_turn(&self) -> Option<Turn> {
        let mut state = self.admission.lock();
        if !state.waiting.is_empty()
            || !self
                .admission
                .can_send(&state, self.webhook, Instant::now())
        {
            return None;
        }
        Admission::start_sending(&mut state, self.webhook);
        Some(self.turn_taken())
    }

    /// Waits for a slot; a claim waiting behind a busy endpoint holds no slot meanwhile.
    pub async fn turn(&self) -> Turn {
        loop {
            let granted = {
                let mut state = self.admission.lock();
                if state.waiting.is_empty()
                    && self
                        .admission
                        .can_send(&state, self.webhook, Instant::now())
                {
                    Admission::start_sending(&mut state, self.webhook);
                    return self.turn_taken();
                }
                let (granted, wait) = oneshot::channel();
                state.waiting.push_back(Waiter {
                    webhook: self.webhook,
                    granted,
                });
                self.admission.grant(&mut state);
                wait
            };
            if granted.await.is_ok() {
                return self.turn_taken();
            }
        }
    }

    /// Puts a hold on this ticket's endpoint at once, before the outcome is even recorded:
    /// its receiver asked us to slow down.
    pub fn hold(&self, wait: Duration) {
        let mut state = self.admission.lock();
        if let Some(endpoint) = state.endpoints.get_mut(&self.webhook) {
            self.admission.hold(endpoint, wait);
        }
    }

    fn turn_taken(&self) -> Turn {
        Turn {
            admission: self.admission.clone(),
            webhook: self.webhook,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        Admission::stop_sending(&mut state, self.webhook);
        self.admission.grant(&mut state);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.webhook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(
        admission: &Arc<Admission>,
        project: ProjectId,
        limit: usize,
        n: usize,
    ) -> Vec<Ticket> {
        let webhook = WebhookId::generate();
        (0..n)
            .map(|_| {
                admission
                    .admit(webhook, project, limit)
                    .expect("room for the claim")
            })
            .collect()
    }

    #[tokio::test]
    async fn turns_never_exceed_the_process_wide_limit_across_endpoints() {
        let admission = Admission::new(3, 2);
        let project = ProjectId::generate();
        let tickets: Vec<Ticket> = (0..4)
            .flat_map(|_| admitted(&admission, project, 2, 2))
            .collect();
        let turns: Vec<Turn> = tickets.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(
            turns.len(),
            3,
            "eight claims on four endpoints, three sending slots"
        );
        drop(turns);
        let again: Vec<Turn> = tickets.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(again.len(), 3, "ended turns give their slots back");
    }

    #[tokio::test]
    async fn an_endpoint_has_its_own_limit_and_a_cap_on_claims_held() {
        let admission = Admission::new(100, 16);
        let project = ProjectId::generate();
        let webhook = WebhookId::generate();
        let held: Vec<Ticket> = (0..8)
            .map(|_| admission.admit(webhook, project, 2).unwrap())
            .collect();
        assert!(
            admission.admit(webhook, project, 2).is_none(),
            "four times its limit at most"
        );
        assert_eq!(admission.busy_endpoints(), [webhook]);
        let turns: Vec<Turn> = held.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(turns.len(), 2);
        assert_eq!(
            admission.room(),
            98,
            "claims beyond its concurrency take no room"
        );
        drop(turns);
        drop(held);
        assert_eq!(
            admission.room(),
            100,
            "dropped tickets give their places back"
        );
        assert!(admission.busy_endpoints().is_empty());
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_project_sending_least() {
        let admission = Admission::new(4, 2);
        let (busy, quiet) = (ProjectId::generate(), ProjectId::generate());
        let mut busy_tickets = admitted(&admission, busy, 2, 3);
        busy_tickets.extend(admitted(&admission, busy, 2, 3));
        let mut turns: Vec<Turn> = busy_tickets.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(turns.len(), 4, "alone, a project may use every slot");
        let quiet_ticket = admitted(&admission, quiet, 2, 1).remove(0);
        let quiet_turn = tokio::spawn(async move {
            let turn = quiet_ticket.turn().await;
            (quiet_ticket, turn)
        });
        tokio::task::yield_now().await;
        turns.pop();
        let (_ticket, _turn) = tokio::time::timeout(Duration::from_secs(5), quiet_turn)
            .await
            .expect("the quiet project gets the freed slot")
            .unwrap();
        turns.pop();
        assert!(
            busy_tickets.iter().all(|t| t.try_turn().is_none()),
            "a slot is free, but the busy project keeps to its share of two"
        );
    }

    #[tokio::test]
    async fn a_hold_keeps_an_endpoint_waiting_until_it_ends() {
        let admission = Admission::new(10, 2);
        let tickets = admitted(&admission, ProjectId::generate(), 2, 2);
        tickets[0].hold(Duration::from_millis(200));
        assert!(tickets[1].try_turn().is_none(), "held back");
        let started = Instant::now();
        let _turn = tokio::time::timeout(Duration::from_secs(5), tickets[1].turn())
            .await
            .expect("the hold ends");
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn a_flow_update_narrows_and_widens_an_endpoint() {
        let admission = Admission::new(10, 4);
        let webhook = WebhookId::generate();
        let project = ProjectId::generate();
        let tickets: Vec<Ticket> = (0..4)
            .map(|_| admission.admit(webhook, project, 4).unwrap())
            .collect();
        admission.update_flow(webhook, 1, None);
        let turns: Vec<Turn> = tickets.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(turns.len(), 1, "halved twice by a throttling receiver");
        admission.update_flow(webhook, 3, None);
        let more: Vec<Turn> = tickets.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(more.len(), 2, "climbing back");
    }

    #[tokio::test]
    async fn a_claim_with_a_narrower_limit_leaves_no_phantom_load() {
        let admission = Admission::new(16, 16);
        let project = ProjectId::generate();
        let webhook = WebhookId::generate();
        let mut tickets: Vec<Ticket> = (0..10)
            .map(|_| admission.admit(webhook, project, 16).unwrap())
            .collect();
        tickets.push(admission.admit(webhook, project, 4).unwrap());
        assert_eq!(
            admission.room(),
            12,
            "the endpoint counts up to its new limit of 4"
        );
        drop(tickets);
        assert_eq!(admission.room(), 16);
        assert!(
            admission.has_room_for(ProjectId::generate()),
            "an idle project left nothing behind"
        );
        assert!(admission.lock().projects.values().all(|p| p.load == 0));
    }
}
