//! Handling one command: dedup, load, decide, append, retry.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use aftersales_schema::{
    decode_stored, encode, EventEnvelope, SchemaError, CURRENT_SCHEMA_VERSION,
};
use aftersales_store::{
    Append, AppendResult, ExpectedVersion, NewEvent, RecordedEvent, Store, StoreError, StreamId,
    Version,
};
use aftersales_ticket::{
    decide, evolve, Actor, Command, Context, Platform, Rejection, RulePackId, Ticket, TicketId,
    Timestamp,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::order_lines::{OrderLineIndex, OrderLineRebuild};

/// How often a command is decided again after another writer changed its ticket first.
/// Writers in this process never race (see `LOCK_STRIPES`); this is for other processes.
/// Reads see only flushed events, so a retry first waits (1, 2, 4 … ms, about 1 s in all)
/// for the winner's flush: retrying at once would re-read the same version.
const MAX_ATTEMPTS: u32 = 10;

/// Commands for one ticket are handled one at a time in a process: racing them would only
/// waste decisions and flushes on version conflicts. Tickets share a lock by hash, so
/// distinct tickets still append concurrently and share group commits.
const LOCK_STRIPES: usize = 256;

/// How many tickets' folded state is kept between commands. Without it every command
/// re-read and re-folded its ticket's whole stream, so a ticket's commands cost grew with
/// its history (RELIABILITY.md, "Load test"). Cleared whole when full: simple and bounded
/// (about 1 KB a ticket); a ticket not in it is folded from its stream as before.
const CACHED_TICKETS: usize = 50_000;

/// The namespace of derived event ids (fixed for ever: changing it breaks deduplication).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_7a1e_2b8d_4c3a_9e61_d2f4_a8b0_c917);

/// The id of the `index`-th event decided for `ticket` under an idempotency `key`: the same
/// message decided again always yields the same ids.
pub fn event_id(ticket: &TicketId, key: &str, index: usize) -> Uuid {
    Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{ticket}\n{key}\n{index}").as_bytes(),
    )
}

/// A command for one ticket, with where it came from.
#[derive(Debug, Clone)]
pub struct Submission {
    pub ticket_id: TicketId,
    pub command: Command,
    /// When it happened on the platform.
    pub at: Timestamp,
    pub actor: Actor,
    /// What makes a redelivery recognisable: `<platform>/<message id>` for platform
    /// messages, the deadline's identity for expiries. `None`: every submission is new.
    pub idempotency_key: Option<String>,
    /// The event that caused this command, if any (an expiry's cause is its deadline).
    pub causation_id: Option<Uuid>,
}

/// What [`Tickets::prepare`] found: an answer already, or events to append.
enum Step {
    Done(Handled),
    Append(Decided),
}

/// Whether [`Tickets::prepare`] reads the stream of a ticket it has not folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Always,
    /// An opening of such a ticket is decided on an empty stream without reading it:
    /// in the ingest almost every opening is of a new ticket, and the read found nothing
    /// (a sled lookup per message, about 5 % of the ingest's CPU).
    NotForAnOpening,
}

/// A decided command waiting for its append.
struct Decided {
    ticket_id: TicketId,
    /// Decided without reading the stream (see [`Read::NotForAnOpening`]).
    unread: bool,
    stream: StreamId,
    expected: ExpectedVersion,
    /// The ticket before the new events.
    ticket: Ticket,
    envelopes: Vec<EventEnvelope>,
}

impl Decided {
    fn new_events(&self) -> Vec<NewEvent> {
        self.envelopes
            .iter()
            .map(|e| NewEvent::new(e.event_id, e.event.name(), encode(e)))
            .collect()
    }
}

fn span(s: &Submission) -> tracing::Span {
    tracing::info_span!(
        "ticket",
        ticket = %s.ticket_id,
        command = s.command.name(),
        key = s.idempotency_key.as_deref().unwrap_or("-"),
    )
}

fn stripe_of(ticket: &TicketId) -> usize {
    let mut hasher = DefaultHasher::new();
    ticket.hash(&mut hasher);
    (hasher.finish() % LOCK_STRIPES as u64) as usize
}

/// An event as read back: its place in the store and its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub position: u64,
    pub version: Version,
    pub envelope: EventEnvelope,
}

/// What handling a submission did.
#[derive(Debug, Clone)]
pub enum Handled {
    /// New events were stored durably; `ticket` is the ticket after them.
    Applied { ticket: Ticket, events: Vec<Stored> },
    /// The idempotency key was stored already: nothing was decided or written.
    Duplicate { events: Vec<Stored> },
}

/// Why a submission was not applied.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("ticket {ticket}: {rejection}")]
    Rejected {
        ticket: TicketId,
        rejection: Rejection,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the event at position {position} cannot be read: {source}; run `aftersales verify`")]
    Unreadable {
        position: u64,
        #[source]
        source: SchemaError,
    },
    #[error("the event at position {position} says it is {payload} but the store filed it as {record}; run `aftersales verify`")]
    Misfiled {
        position: u64,
        record: String,
        payload: String,
    },
    #[error("the command opens ticket {opens} but was routed to ticket {routed}")]
    TicketIdMismatch { routed: TicketId, opens: TicketId },
    #[error("ticket {0} kept changing while the command was decided; gave up after {MAX_ATTEMPTS} attempts")]
    Contention(TicketId),
}

/// Picks the rule pack a ticket opened now falls under, by platform.
pub type RulePackChooser = Arc<dyn Fn(&Platform) -> Option<RulePackId> + Send + Sync>;

/// The ticket command handler over one store.
pub struct Tickets {
    store: Arc<Store>,
    order_lines: RwLock<OrderLineIndex>,
    stripes: Vec<Mutex<()>>,
    rule_packs: Option<RulePackChooser>,
    /// A ticket's state folded up to a stream version. Only a prefix of the stream: the
    /// events after it are read and folded on top, so an append made around this handler
    /// is never missed.
    folded: Mutex<HashMap<TicketId, (Version, Ticket)>>,
}

impl Tickets {
    /// Wraps a store, rebuilding the order-line index from its log.
    pub fn new(store: Arc<Store>) -> Result<Self, HandleError> {
        let mut rebuild = OrderLineRebuild::default();
        for record in store.iter_all(1) {
            let stored = read(record?)?;
            rebuild.apply(&stored.envelope.ticket_id, &stored.envelope.event);
        }
        Ok(Self {
            store,
            order_lines: RwLock::new(rebuild.finish()),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            rule_packs: None,
            folded: Mutex::default(),
        })
    }

    /// Records on every ticket opened from now on the rule pack `choose` names for its
    /// platform; the ticket keeps it for life (a newer pack applies to newer tickets only).
    pub fn with_rule_packs(mut self, choose: RulePackChooser) -> Self {
        self.rule_packs = Some(choose);
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Decides and durably appends one command. Returns once the events are on disk.
    pub fn handle(&self, s: Submission) -> Result<Handled, HandleError> {
        // Every log line while deciding and appending names the ticket and the command
        // (ids and names only: notes and payloads never reach a span).
        let _span = span(&s).entered();
        let stream = self.check_routing(&s)?;
        let _one_at_a_time = self.stripes[stripe_of(&s.ticket_id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1 << (attempt - 1)));
            }
            let decided = match self.prepare(&s, stream.clone(), Read::Always)? {
                Step::Done(handled) => return Ok(handled),
                Step::Append(decided) => decided,
            };
            match self
                .store
                .append(&decided.stream, decided.expected, decided.new_events())
            {
                Ok(result) => return Ok(self.complete(decided, result)),
                // Someone else appended first: decide again on the newer ticket.
                Err(StoreError::WrongExpectedVersion { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(HandleError::Contention(s.ticket_id))
    }

    /// Decides several commands and appends them in one store request
    /// ([`Store::append_many`]), one flush for all: the ingest's batches. One outcome per
    /// submission, in order, each what [`Tickets::handle`] would have answered. Commands
    /// for one ticket are applied in their order: a ticket met again in the batch is
    /// handled after the batch, one by one. An opening of a ticket not folded here is
    /// decided without reading its stream; the store tells when it should have been.
    pub fn handle_many(&self, subs: Vec<Submission>) -> Vec<Result<Handled, HandleError>> {
        let mut outcomes: Vec<Option<Result<Handled, HandleError>>> =
            subs.iter().map(|_| None).collect();
        let mut seen = std::collections::HashSet::new();
        let mut later = Vec::new();
        let mut batch = Vec::new();
        for (i, s) in subs.into_iter().enumerate() {
            if seen.insert(s.ticket_id.clone()) {
                match self.check_routing(&s) {
                    Ok(stream) => batch.push((i, s, stream)),
                    Err(e) => outcomes[i] = Some(Err(e)),
                }
            } else {
                later.push((i, s));
            }
        }
        // Stripes in ascending order, each once: two batches never wait on each other.
        let mut stripes: Vec<usize> = batch
            .iter()
            .map(|(_, s, _)| stripe_of(&s.ticket_id))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut retry = Vec::new();
        {
            let _held: Vec<_> = stripes
                .iter()
                .map(|&n| self.stripes[n].lock().unwrap_or_else(|e| e.into_inner()))
                .collect();
            let mut decided = Vec::new();
            for (i, s, stream) in batch {
                let _span = span(&s).entered();
                match self.prepare(&s, stream, Read::NotForAnOpening) {
                    Ok(Step::Done(handled)) => outcomes[i] = Some(Ok(handled)),
                    Ok(Step::Append(d)) => decided.push((i, s, d)),
                    Err(e) => outcomes[i] = Some(Err(e)),
                }
            }
            let appends = decided
                .iter()
                .map(|(_, _, d)| Append {
                    stream: d.stream.clone(),
                    expected: d.expected,
                    events: d.new_events(),
                })
                .collect();
            match self.store.append_many(appends) {
                Ok(results) => {
                    for ((i, s, d), result) in decided.into_iter().zip(results) {
                        match result {
                            // An opening decided without reading its stream met one: a
                            // redelivery (the store found its ids) or another opening of
                            // the ticket. Handled again the careful way, which reads.
                            Ok(r) if d.unread && r.deduplicated => retry.push((i, s)),
                            Err(StoreError::PartialDuplicate { .. }) if d.unread => {
                                retry.push((i, s))
                            }
                            Ok(r) => outcomes[i] = Some(Ok(self.complete(d, r))),
                            Err(StoreError::WrongExpectedVersion { .. }) => retry.push((i, s)),
                            Err(e) => outcomes[i] = Some(Err(e.into())),
                        }
                    }
                }
                // The store can write nothing (closed, or a write to disk failed): the
                // same answer for each, as each of their appends would have had.
                Err(e) => {
                    for (i, _, _) in decided {
                        let each = match &e {
                            StoreError::Closed => StoreError::Closed,
                            other => StoreError::Poisoned {
                                reason: match other {
                                    StoreError::Poisoned { reason } => reason.clone(),
                                    other => other.to_string(),
                                },
                            },
                        };
                        outcomes[i] = Some(Err(each.into()));
                    }
                }
            }
        }
        // Lost a race with another process, or a repeated ticket: one at a time, in order.
        retry.extend(later);
        retry.sort_by_key(|(i, _)| *i);
        for (i, s) in retry {
            outcomes[i] = Some(self.handle(s));
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(HandleError::Store(StoreError::Closed))))
            .collect()
    }

    /// The ticket's stream, once the command is known to belong to it.
    fn check_routing(&self, s: &Submission) -> Result<StreamId, HandleError> {
        if let Command::Open { ticket } = &s.command {
            // The stream is the ticket: an opening routed elsewhere would mix two tickets.
            if ticket.id != s.ticket_id {
                return Err(HandleError::TicketIdMismatch {
                    routed: s.ticket_id.clone(),
                    opens: ticket.id.clone(),
                });
            }
        }
        stream_of(&s.ticket_id)
    }

    /// Everything before the append, under the ticket's stripe: a redelivery is answered
    /// from the store, a refusal is final, otherwise the events to append.
    fn prepare(&self, s: &Submission, stream: StreamId, reads: Read) -> Result<Step, HandleError> {
        let folded = self.lock_folded().get(&s.ticket_id).cloned();
        let unread = folded.is_none()
            && reads == Read::NotForAnOpening
            && matches!(s.command, Command::Open { .. });
        let (mut version, mut ticket, records) = match folded {
            // A new ticket, most likely: decided as unopened, appended only if its stream
            // is still empty (`NoStream`); the store refuses it otherwise, or finds its
            // ids stored, and the caller handles it again with `Read::Always`.
            None if unread => (0, Ticket::default(), Vec::new()),
            Some((version, ticket)) => {
                if let Some(key) = &s.idempotency_key {
                    if let Some(events) = self.already_stored(&s.ticket_id, key)? {
                        return Ok(Step::Done(Handled::Duplicate { events }));
                    }
                }
                let newer = self.store.read_stream(&stream, version + 1, usize::MAX)?;
                (version, ticket, newer)
            }
            // Not folded (a new ticket, usually): the whole stream is read anyway, and
            // it answers the idempotency check too, one store read instead of two.
            None => {
                let all = self.store.read_stream(&stream, 1, usize::MAX)?;
                if let Some(key) = &s.idempotency_key {
                    let events = stored_under(&s.ticket_id, key, &all)?;
                    if !events.is_empty() {
                        return Ok(Step::Done(Handled::Duplicate { events }));
                    }
                }
                (0, Ticket::default(), all)
            }
        };
        for record in records {
            version = record.version;
            ticket = evolve(ticket, &read(record)?.envelope.event);
        }
        let ctx = self.context(s);
        let events = match decide(&ticket, s.command.clone(), &ctx) {
            Ok(events) => events,
            // Refused as unopened: answered as it would be on what the stream holds.
            Err(_) if unread => return self.prepare(s, stream, Read::Always),
            Err(rejection) => {
                // The original of this redelivery may have become durable between the
                // check above and the read: then the ticket refuses it because it has
                // happened, and the answer is the stored events, not a rejection.
                if let Some(key) = &s.idempotency_key {
                    if let Some(events) = self.already_stored(&s.ticket_id, key)? {
                        return Ok(Step::Done(Handled::Duplicate { events }));
                    }
                }
                return Err(HandleError::Rejected {
                    ticket: s.ticket_id.clone(),
                    rejection,
                });
            }
        };
        let envelopes = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| EventEnvelope {
                event_id: match &s.idempotency_key {
                    Some(key) => event_id(&s.ticket_id, key, i),
                    None => Uuid::new_v4(),
                },
                ticket_id: s.ticket_id.clone(),
                schema_version: CURRENT_SCHEMA_VERSION,
                occurred_at: s.at,
                recorded_at: None,
                source_message_id: s.idempotency_key.clone(),
                causation_id: s.causation_id,
                event,
            })
            .collect();
        Ok(Step::Append(Decided {
            ticket_id: s.ticket_id.clone(),
            unread,
            stream,
            expected: match version {
                0 => ExpectedVersion::NoStream,
                v => ExpectedVersion::Exact(v),
            },
            ticket,
            envelopes,
        }))
    }

    /// After the append: the order-line index and the folded cache learn the events.
    fn complete(&self, d: Decided, result: AppendResult) -> Handled {
        let mut ticket = d.ticket;
        let mut stored = Vec::with_capacity(d.envelopes.len());
        for (envelope, at) in d.envelopes.into_iter().zip(result.events) {
            ticket = evolve(ticket, &envelope.event);
            stored.push(Stored {
                position: at.position,
                version: at.version,
                envelope,
            });
        }
        // Only a refund changes the index: the others need not hold its lock. A ticket's
        // line never changes, so its state after all the events names it.
        let refunds = stored
            .iter()
            .filter(|s| OrderLineIndex::is_refund(&s.envelope.event));
        let mut refunds = refunds.peekable();
        if refunds.peek().is_some() {
            let mut index = self.order_lines.write().unwrap_or_else(|e| e.into_inner());
            for s in refunds {
                index.apply(&ticket, &s.envelope.event);
            }
        }
        if result.deduplicated {
            return Handled::Duplicate { events: stored };
        }
        if let Some(last) = stored.last() {
            let mut folded = self.lock_folded();
            if folded.len() >= CACHED_TICKETS {
                folded.clear();
            }
            folded.insert(d.ticket_id.clone(), (last.version, ticket.clone()));
        }
        Handled::Applied {
            ticket,
            events: stored,
        }
    }

    fn lock_folded(&self) -> std::sync::MutexGuard<'_, HashMap<TicketId, (Version, Ticket)>> {
        // Entries are replaced whole; a panic elsewhere cannot leave one half-written.
        self.folded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn context(&self, s: &Submission) -> Context {
        let mut ctx = Context::new(s.at, s.actor);
        if let Command::Open { ticket } = &s.command {
            let index = self.order_lines.read().unwrap_or_else(|e| e.into_inner());
            ctx.order_line_refunded_by = index
                .refunded_by(&ticket.platform, &ticket.order_id, &ticket.order_line_id)
                .cloned();
            ctx.rule_pack = self
                .rule_packs
                .as_ref()
                .and_then(|choose| choose(&ticket.platform));
        }
        ctx
    }

    /// The events stored under `key` for this ticket, if any were.
    fn already_stored(
        &self,
        ticket: &TicketId,
        key: &str,
    ) -> Result<Option<Vec<Stored>>, HandleError> {
        let stream = stream_of(ticket)?;
        let mut found = Vec::new();
        while let Some(record) = self
            .store
            .get_in_stream(&stream, event_id(ticket, key, found.len()))?
        {
            found.push(read(record)?);
        }
        Ok((!found.is_empty()).then_some(found))
    }

    /// A ticket's whole history, oldest first.
    pub fn history(&self, ticket: &TicketId) -> Result<Vec<Stored>, HandleError> {
        let records = self.store.read_stream(&stream_of(ticket)?, 1, usize::MAX)?;
        records.into_iter().map(read).collect()
    }

    /// The ticket as it stands now.
    pub fn load(&self, ticket: &TicketId) -> Result<Ticket, HandleError> {
        Ok(fold(&self.history(ticket)?))
    }

    /// The ticket and its history as they stood at `at` (by the store's recording time).
    pub fn load_as_of(
        &self,
        ticket: &TicketId,
        at: DateTime<Utc>,
    ) -> Result<(Ticket, Vec<Stored>), HandleError> {
        let records = self
            .store
            .read_stream_until(&stream_of(ticket)?, at, usize::MAX)?;
        let history: Vec<Stored> = records.into_iter().map(read).collect::<Result<_, _>>()?;
        Ok((fold(&history), history))
    }
}

/// Replays stored events into a ticket.
/// The events stored under `key` among a ticket's records (what
/// [`Tickets::already_stored`] finds in the store).
fn stored_under(
    ticket: &TicketId,
    key: &str,
    records: &[RecordedEvent],
) -> Result<Vec<Stored>, HandleError> {
    let mut found = Vec::new();
    loop {
        let id = event_id(ticket, key, found.len());
        match records.iter().find(|r| r.id == id) {
            Some(record) => found.push(read(record.clone())?),
            None => return Ok(found),
        }
    }
}

pub(crate) fn fold(history: &[Stored]) -> Ticket {
    history
        .iter()
        .fold(Ticket::default(), |t, s| evolve(t, &s.envelope.event))
}

fn stream_of(ticket: &TicketId) -> Result<StreamId, HandleError> {
    Ok(StreamId::new(ticket.as_str())?)
}

/// Decodes a stored record, completing its envelope with the store's own facts and checking
/// that the payload is the event the store filed.
pub fn read(record: RecordedEvent) -> Result<Stored, HandleError> {
    let envelope = decode_stored(&record.payload, record.recorded_at).map_err(|source| {
        HandleError::Unreadable {
            position: record.position,
            source,
        }
    })?;
    if envelope.event_id != record.id || envelope.ticket_id.as_str() != record.stream.as_str() {
        return Err(HandleError::Misfiled {
            position: record.position,
            record: format!("event {} of {}", record.id, record.stream),
            payload: format!("event {} of {}", envelope.event_id, envelope.ticket_id),
        });
    }
    Ok(Stored {
        position: record.position,
        version: record.version,
        envelope,
    })
}
