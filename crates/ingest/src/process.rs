//! Applying one platform body to the tickets, whatever carried it (NATS, HTTP, a file),
//! and what that means for the message (the pure [`verdict`]).

use std::time::Duration;

use aftersales_adapters::{translate, IfRefused, Message, Unusable};
use aftersales_app::{HandleError, Handled, Submission, Tickets};
use aftersales_ticket::{Command, Platform, Rejection, TicketId};

/// What applying one body did.
#[derive(Debug)]
pub enum Outcome {
    /// Every command of the body is stored (now or by an earlier delivery); `last` is the
    /// highest log position among their events (what must be published before the ack
    /// in a partitioned deployment).
    Stored {
        applied: usize,
        duplicates: usize,
        last: u64,
    },
    /// The body can never be used as it is.
    Unusable(Unusable),
    /// A ticket refused a command. `parkable`: a later message may make it acceptable
    /// (its ticket is not opened yet, or platforms delivered two steps out of order).
    Refused {
        ticket: TicketId,
        rejection: Rejection,
        parkable: bool,
    },
    /// Storing failed for a reason that may pass (contention, an unreadable record).
    Failed(String),
    /// The store refuses every append (a write to disk failed: a full disk; or it is
    /// closing). The message is not at fault: it is retried however long that takes and
    /// never dead-lettered.
    StoreDown(String),
}

/// Translates and applies a body from `platform`. Commands of one body are applied in
/// order; when one stops, those before it are stored and a redelivery finds them stored.
pub fn apply(tickets: &Tickets, platform: &Platform, body: &[u8]) -> Outcome {
    match translate(platform, body) {
        Ok(messages) => apply_messages(tickets, messages),
        Err(unusable) => Outcome::Unusable(unusable),
    }
}

/// Applies already translated messages (see [`apply`]).
pub fn apply_messages(tickets: &Tickets, messages: Vec<Message>) -> Outcome {
    let mut tally = Tally::default();
    for m in messages {
        let (submission, fallback) = submission_of(m);
        let result = tickets.handle(submission.clone());
        let result = with_fallback(tickets, result, submission, fallback);
        if let Some(stop) = tally.add(result) {
            return stop;
        }
    }
    tally.stored()
}

/// Applies the translated messages of several bodies, in order, each with the outcome
/// [`apply_messages`] would give it. Runs of one-command bodies on distinct tickets are
/// decided together and appended in one store request ([`Tickets::handle_many`]): one
/// flush for the run instead of one per body.
pub fn apply_batch(tickets: &Tickets, bodies: Vec<Vec<Message>>) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(bodies.len());
    let mut run = Vec::new();
    let mut in_run = std::collections::HashSet::new();
    for mut body in bodies {
        if body.len() == 1 && !in_run.contains(&body[0].ticket_id) {
            in_run.insert(body[0].ticket_id.clone());
            run.extend(body.pop());
            continue;
        }
        // A ticket met again, or a body of several commands: the run so far goes first.
        outcomes.extend(apply_run(tickets, std::mem::take(&mut run)));
        in_run.clear();
        if body.len() == 1 {
            in_run.insert(body[0].ticket_id.clone());
            run.extend(body.pop());
        } else {
            outcomes.push(apply_messages(tickets, body));
        }
    }
    outcomes.extend(apply_run(tickets, run));
    outcomes
}

/// One-command bodies on distinct tickets, decided and appended together.
fn apply_run(tickets: &Tickets, messages: Vec<Message>) -> Vec<Outcome> {
    if messages.is_empty() {
        return Vec::new();
    }
    let (submissions, fallbacks): (Vec<_>, Vec<_>) =
        messages.into_iter().map(submission_of).unzip();
    let results = tickets.handle_many(submissions.clone());
    results
        .into_iter()
        .zip(submissions.into_iter().zip(fallbacks))
        .map(|(result, (submission, fallback))| {
            let mut tally = Tally::default();
            let result = with_fallback(tickets, result, submission, fallback);
            tally.add(result).unwrap_or_else(|| tally.stored())
        })
        .collect()
}

/// A message as a submission, with the command to store instead if the ticket refuses it.
fn submission_of(m: Message) -> (Submission, Option<Command>) {
    let fallback = match &m.if_refused {
        IfRefused::Annotate(note) => Some(Command::Annotate { note: note.clone() }),
        IfRefused::DeadLetter => None,
    };
    let submission = Submission {
        ticket_id: m.ticket_id.clone(),
        command: m.command,
        at: m.at,
        actor: m.actor,
        idempotency_key: Some(m.key),
        causation_id: None,
    };
    (submission, fallback)
}

/// A refused message whose platform step is only informative is kept as a note.
fn with_fallback(
    tickets: &Tickets,
    result: Result<Handled, HandleError>,
    submission: Submission,
    fallback: Option<Command>,
) -> Result<Handled, HandleError> {
    if let (Err(HandleError::Rejected { rejection, .. }), Some(note)) = (&result, fallback) {
        if matches!(
            rejection,
            Rejection::NotAllowedInState { .. } | Rejection::TicketFinal { .. }
        ) {
            // Same key: a redelivery finds the note and does not decide again.
            return tickets.handle(Submission {
                command: note,
                ..submission
            });
        }
    }
    result
}

/// What the commands of one body did so far.
#[derive(Default)]
struct Tally {
    applied: usize,
    duplicates: usize,
    last: u64,
}

impl Tally {
    /// Counts one command's result; the outcome of the whole body if it stops here.
    fn add(&mut self, result: Result<Handled, HandleError>) -> Option<Outcome> {
        let highest = |events: &[aftersales_app::Stored]| events.iter().map(|e| e.position).max();
        match result {
            Ok(Handled::Applied { events, .. }) => {
                self.applied += 1;
                self.last = self.last.max(highest(&events).unwrap_or(0));
                None
            }
            Ok(Handled::Duplicate { events }) => {
                self.duplicates += 1;
                self.last = self.last.max(highest(&events).unwrap_or(0));
                None
            }
            Err(HandleError::Rejected { ticket, rejection }) => {
                let parkable = matches!(
                    rejection,
                    Rejection::NotOpened { .. } | Rejection::NotAllowedInState { .. }
                );
                Some(Outcome::Refused {
                    ticket,
                    rejection,
                    parkable,
                })
            }
            Err(HandleError::TicketIdMismatch { routed, opens }) => {
                Some(Outcome::Unusable(Unusable::Malformed {
                    detail: format!("the message opens {opens} but names ticket {routed}"),
                }))
            }
            Err(HandleError::Store(e)) if e.is_unavailable() => {
                Some(Outcome::StoreDown(e.to_string()))
            }
            Err(other) => Some(Outcome::Failed(other.to_string())),
        }
    }

    fn stored(self) -> Outcome {
        Outcome::Stored {
            applied: self.applied,
            duplicates: self.duplicates,
            last: self.last,
        }
    }
}

/// How long messages are parked and retried (from config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a refused message waits for the message that makes it acceptable.
    pub park_window: Duration,
    /// Deliveries after which a message failing for a transient reason is dead-lettered.
    pub max_deliver: u64,
    /// The first retry delay; it doubles per delivery up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            park_window: Duration::from_secs(600),
            max_deliver: 20,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// What to do with a message after applying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ack,
    /// Negative-acknowledge: deliver again after this delay.
    Retry(Duration),
    DeadLetter(Reason),
}

/// Why a message was dead-lettered: a stable code and the words for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: String,
    pub text: String,
}

/// Decides the message's fate from what applying it did, its delivery count (1 on the
/// first delivery) and how long ago it was published.
pub fn verdict(outcome: &Outcome, delivered: u64, age: Duration, limits: &Limits) -> Verdict {
    let backoff = || {
        let doublings = delivered.saturating_sub(1).min(16) as u32;
        Verdict::Retry(
            limits
                .first_backoff
                .saturating_mul(1 << doublings)
                .min(limits.max_backoff),
        )
    };
    match outcome {
        Outcome::Stored { .. } => Verdict::Ack,
        Outcome::Unusable(u) => Verdict::DeadLetter(Reason {
            code: u.code().to_owned(),
            text: u.to_string(),
        }),
        Outcome::Refused {
            ticket,
            rejection,
            parkable,
        } => {
            if *parkable && age < limits.park_window {
                return backoff();
            }
            let text = if *parkable {
                format!(
                    "still refused after the {} s park window: ticket {ticket}: {rejection}",
                    limits.park_window.as_secs()
                )
            } else {
                format!("ticket {ticket}: {rejection}")
            };
            Verdict::DeadLetter(Reason {
                code: format!("refused_{}", rejection.code()),
                text,
            })
        }
        Outcome::Failed(error) => {
            if delivered >= limits.max_deliver {
                Verdict::DeadLetter(Reason {
                    code: "failed".into(),
                    text: format!("failed {delivered} times, last: {error}"),
                })
            } else {
                backoff()
            }
        }
        Outcome::StoreDown(_) => backoff(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aftersales_ticket::State;

    fn refused(parkable: bool) -> Outcome {
        Outcome::Refused {
            ticket: TicketId::parse("jd:1").unwrap(),
            rejection: if parkable {
                Rejection::NotOpened { command: "approve" }
            } else {
                Rejection::TicketFinal {
                    command: "approve",
                    state: State::Refunded,
                }
            },
            parkable,
        }
    }

    #[test]
    fn stored_is_acked_and_unusable_is_dead_lettered_with_its_code() {
        let limits = Limits::default();
        let stored = Outcome::Stored {
            applied: 1,
            duplicates: 0,
            last: 1,
        };
        assert_eq!(verdict(&stored, 1, Duration::ZERO, &limits), Verdict::Ack);
        let bad = Outcome::Unusable(Unusable::NotJson {
            detail: "eof".into(),
        });
        match verdict(&bad, 1, Duration::ZERO, &limits) {
            Verdict::DeadLetter(r) => assert_eq!(r.code, "not_json"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parkable_refusals_wait_for_the_window_then_are_dead_lettered() {
        let limits = Limits::default();
        assert!(matches!(
            verdict(&refused(true), 3, Duration::from_secs(599), &limits),
            Verdict::Retry(_)
        ));
        match verdict(&refused(true), 30, Duration::from_secs(600), &limits) {
            Verdict::DeadLetter(r) => {
                assert_eq!(r.code, "refused_not_opened");
                assert!(r.text.contains("park window"), "{}", r.text);
            }
            other => panic!("{other:?}"),
        }
        // A final ticket will never accept it: no parking.
        assert!(matches!(
            verdict(&refused(false), 1, Duration::ZERO, &limits),
            Verdict::DeadLetter(r) if r.code == "refused_ticket_final"
        ));
    }

    #[test]
    fn transient_failures_back_off_exponentially_up_to_a_cap_then_dead_letter() {
        let limits = Limits::default();
        let failed = Outcome::Failed("ticket jd:1 kept changing".into());
        let delay = |n| match verdict(&failed, n, Duration::ZERO, &limits) {
            Verdict::Retry(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(delay(1), Duration::from_millis(250));
        assert_eq!(delay(2), Duration::from_millis(500));
        assert_eq!(delay(3), Duration::from_secs(1));
        assert_eq!(delay(19), Duration::from_secs(30));
        assert!(matches!(
            verdict(&failed, 20, Duration::ZERO, &limits),
            Verdict::DeadLetter(r) if r.code == "failed" && r.text.contains("kept changing")
        ));
    }

    #[test]
    fn a_store_that_cannot_write_never_dead_letters_a_message() {
        let limits = Limits::default();
        let down = Outcome::StoreDown("No space left on device".into());
        for delivered in [1, 20, 1_000] {
            let v = verdict(&down, delivered, Duration::from_secs(86_400), &limits);
            assert!(matches!(v, Verdict::Retry(_)), "{delivered}: {v:?}");
        }
        assert_eq!(
            verdict(&down, 1_000, Duration::ZERO, &limits),
            Verdict::Retry(limits.max_backoff)
        );
    }
}
