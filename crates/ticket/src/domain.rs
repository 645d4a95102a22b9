//! The nouns of the after-sales domain: ids, platforms, service types, money, notes, time.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// An instant with the offset it was given in (platforms send China time, +08:00).
pub type Timestamp = DateTime<FixedOffset>;

/// China Standard Time, UTC+08:00 with no daylight saving: every platform rule counts in it.
pub fn china_offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// Why a piece of text could not become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("a ticket id must be 1 to 128 characters of A-Z a-z 0-9 . _ : - (got {0:?})")]
    TicketId(String),
    #[error("a platform name must be 1 to 32 characters of a-z 0-9 _ (got {0:?})")]
    Platform(String),
    #[error("an identifier ({what}) must be 1 to 128 characters with no control characters")]
    Identifier { what: &'static str },
    #[error("a note must have 1 to 4000 characters of text besides white space")]
    Note,
    #[error("a rule pack id is name@version, like jd@2024 (got {0:?})")]
    RulePackId(String),
    #[error("an amount must be yuan with at most two decimals, like 12.30 (got {0:?})")]
    Money(String),
}

/// Our id for a ticket: `<platform>:<platform ticket id>`, unique across platforms.
///
/// The character set is restricted because the id travels in URLs, NATS subjects and file
/// names; an id that fails the check never reaches the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TicketId(String);

impl TicketId {
    /// Builds the id for a platform's ticket.
    pub fn for_platform(
        platform: &Platform,
        platform_ticket_id: &str,
    ) -> Result<Self, InvalidValue> {
        Self::parse(&format!("{platform}:{platform_ticket_id}"))
    }

    /// Checks and wraps an id.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::TicketId(s.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TicketId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TicketId> for String {
    fn from(id: TicketId) -> Self {
        id.0
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// The marketplace a ticket comes from. Taobao and Tmall share one message system (TMC) and
/// one rule set here, so `taobao` is read as [`Platform::Tmall`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Platform {
    Jd,
    Tmall,
    Pdd,
    Kuaishou,
    Douyin,
    /// A merchant-defined source (its own shop, another marketplace), fed in the generic format.
    Other(PlatformName),
}

/// The name of a merchant-defined platform: 1 to 32 characters of `a-z 0-9 _`, and not the
/// name of a known platform. Only [`Platform::from_str`] builds one, so every stored
/// platform reads back as the same value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlatformName(String);

impl PlatformName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Platform {
    pub fn as_str(&self) -> &str {
        match self {
            Platform::Jd => "jd",
            Platform::Tmall => "tmall",
            Platform::Pdd => "pdd",
            Platform::Kuaishou => "kuaishou",
            Platform::Douyin => "douyin",
            Platform::Other(name) => name.as_str(),
        }
    }
}

impl FromStr for Platform {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "jd" => Platform::Jd,
            "tmall" | "taobao" => Platform::Tmall,
            "pdd" | "pinduoduo" => Platform::Pdd,
            "kuaishou" => Platform::Kuaishou,
            "douyin" => Platform::Douyin,
            other => {
                let ok = !other.is_empty()
                    && other.len() <= 32
                    && other
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !ok {
                    return Err(InvalidValue::Platform(other.chars().take(64).collect()));
                }
                Platform::Other(PlatformName(other.to_owned()))
            }
        })
    }
}

impl TryFrom<String> for Platform {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Platform> for String {
    fn from(p: Platform) -> Self {
        p.as_str().to_owned()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of after-sales service the customer asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceType {
    /// 退货退款: goods come back, money goes out.
    ReturnRefund,
    /// 换货/换新: goods come back, a replacement goes out.
    Exchange,
    /// 上门维修: repaired at the customer's place.
    RepairOnsite,
    /// 寄修: the customer sends the goods in for repair.
    RepairSendIn,
    /// 仅退款 / 不退货仅退款: money back, no goods returned.
    RefundOnly,
}

impl ServiceType {
    pub const ALL: [ServiceType; 5] = [
        ServiceType::ReturnRefund,
        ServiceType::Exchange,
        ServiceType::RepairOnsite,
        ServiceType::RepairSendIn,
        ServiceType::RefundOnly,
    ];

    /// The outcome the customer asked for (invariant 1 compares disposals with it).
    pub fn requested_outcome(self) -> Outcome {
        match self {
            ServiceType::ReturnRefund | ServiceType::RefundOnly => Outcome::Refund,
            ServiceType::Exchange => Outcome::Exchange,
            ServiceType::RepairOnsite | ServiceType::RepairSendIn => Outcome::Repair,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ReturnRefund => "return_refund",
            ServiceType::Exchange => "exchange",
            ServiceType::RepairOnsite => "repair_onsite",
            ServiceType::RepairSendIn => "repair_send_in",
            ServiceType::RefundOnly => "refund_only",
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the customer ends up with: money, a replacement, or a repaired item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Refund,
    Exchange,
    Repair,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Refund => "refund",
            Outcome::Exchange => "exchange",
            Outcome::Repair => "repair",
        })
    }
}

/// Why the customer opened the ticket. Only `seven_day_no_reason` changes rules (window and
/// review deadline); the others are kept for reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// 七天无理由.
    SevenDayNoReason,
    /// 质量问题.
    QualityProblem,
    /// 与描述不符.
    NotAsDescribed,
    /// 发错货 / 少件.
    WrongOrMissingItem,
    /// 物流损坏.
    DamagedInTransit,
    /// 未发货 / 不想要了 before shipment (order cancellation).
    CancelBeforeShipment,
    Other,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SevenDayNoReason => "seven_day_no_reason",
            Reason::QualityProblem => "quality_problem",
            Reason::NotAsDescribed => "not_as_described",
            Reason::WrongOrMissingItem => "wrong_or_missing_item",
            Reason::DamagedInTransit => "damaged_in_transit",
            Reason::CancelBeforeShipment => "cancel_before_shipment",
            Reason::Other => "other",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money in fen (cents of a yuan). Never a float: platform ids and amounts are
/// exact, and a refund must add up to the fen.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(u64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_cents(cents: u64) -> Self {
        Money(cents)
    }

    pub const fn cents(self) -> u64 {
        self.0
    }

    /// Parses a yuan amount as platforms send it ("100", "100.5", "100.00").
    pub fn parse_yuan(s: &str) -> Result<Self, InvalidValue> {
        let bad = || InvalidValue::Money(s.chars().take(32).collect());
        let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let yuan: u64 = whole.parse().map_err(|_| bad())?;
        let fen: u64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<u64>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        yuan.checked_mul(100)
            .and_then(|c| c.checked_add(fen))
            .map(Money)
            .ok_or_else(bad)
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "¥{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps the value: 1 to 128 characters, no control characters.
            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
                    return Err(InvalidValue::Identifier { what: $what });
                }
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The platform's order id (kept as text: platform ids exceed 2^53).
    OrderId,
    "order id"
);
identifier!(
    /// The platform's own id of the ticket (JD serviceId, Taobao refund_id, Douyin
    /// aftersale_id, …), kept as text: platform ids exceed 2^53.
    PlatformTicketId,
    "platform ticket id"
);
identifier!(
    /// The order line (sub-order) the ticket is about; one ticket per purchased item.
    OrderLineId,
    "order line id"
);
identifier!(
    /// A stock-keeping unit code; an exchange to another colour or size changes it.
    Sku,
    "sku"
);
identifier!(
    /// The platform's opaque customer id. Never a phone number, name or address.
    CustomerId,
    "customer id"
);
identifier!(
    /// The id of the rule (in a platform rule pack) that set a deadline or decided an outcome.
    RuleId,
    "rule id"
);
identifier!(
    /// A carrier's waybill number for goods shipped back.
    Waybill,
    "waybill"
);

/// A rule pack's versioned id, `name@version` (`jd@2024`): a rule's meaning never changes
/// under one id; a changed rule set gets a new version. A ticket records the pack it was
/// opened under and keeps it for life.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RulePackId(String);

impl RulePackId {
    pub fn parse(s: &str) -> Result<RulePackId, InvalidValue> {
        let part_ok = |part: &str, extra: &[u8]| {
            !part.is_empty()
                && part.len() <= 32
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
        };
        match s.split_once('@') {
            Some((name, version)) if part_ok(name, b"_") && part_ok(version, b"._-") => {
                Ok(RulePackId(s.to_owned()))
            }
            _ => Err(InvalidValue::RulePackId(s.chars().take(64).collect())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RulePackId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RulePackId::parse(&s)
    }
}

impl From<RulePackId> for String {
    fn from(id: RulePackId) -> Self {
        id.0
    }
}

impl fmt::Display for RulePackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A written record: a reason, a note of consent, a note of a conversation.
///
/// May hold personal data, so it is shown in the API and exports but never logged.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Note(String);

impl Note {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let t = s.trim();
        if t.is_empty() || t.chars().count() > 4000 {
            return Err(InvalidValue::Note);
        }
        Ok(Self(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Notes may name people: Debug shows only their length, so a stray `{:?}` cannot leak them.
impl fmt::Debug for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Note({} chars)", self.0.chars().count())
    }
}

impl TryFrom<String> for Note {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Note> for String {
    fn from(n: Note) -> Self {
        n.0
    }
}

/// Who did something on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Merchant,
    Customer,
    /// The platform itself: its customer service, its arbitration, or its automatic rules.
    Platform,
}

/// How returned goods travel back after approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnMethod {
    /// The customer ships them (the platform wants a waybill number).
    #[default]
    CustomerShips,
    /// The merchant collects them (JD: within 48h of approval).
    MerchantPickup,
}

/// The kinds of SLA clock the platforms run against a merchant (RULES.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    Review,
    DisposeAfterReceipt,
    Pickup,
    RepairOnsite,
    RepairSendIn,
    CancelReviewBeforeShipment,
    CancelReviewAfterShipment,
    RefundOnlyAutoApprove,
    CustomerResubmit,
    CustomerShipBack,
    MerchantConfirmRefund,
    CustomerConfirm,
    ViolationAppeal,
    ComplaintReply,
}

impl DeadlineKind {
    pub const ALL: [DeadlineKind; 14] = [
        DeadlineKind::Review,
        DeadlineKind::DisposeAfterReceipt,
        DeadlineKind::Pickup,
        DeadlineKind::RepairOnsite,
        DeadlineKind::RepairSendIn,
        DeadlineKind::CancelReviewBeforeShipment,
        DeadlineKind::CancelReviewAfterShipment,
        DeadlineKind::RefundOnlyAutoApprove,
        DeadlineKind::CustomerResubmit,
        DeadlineKind::CustomerShipBack,
        DeadlineKind::MerchantConfirmRefund,
        DeadlineKind::CustomerConfirm,
        DeadlineKind::ViolationAppeal,
        DeadlineKind::ComplaintReply,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Review => "review",
            DeadlineKind::DisposeAfterReceipt => "dispose_after_receipt",
            DeadlineKind::Pickup => "pickup",
            DeadlineKind::RepairOnsite => "repair_onsite",
            DeadlineKind::RepairSendIn => "repair_send_in",
            DeadlineKind::CancelReviewBeforeShipment => "cancel_review_before_shipment",
            DeadlineKind::CancelReviewAfterShipment => "cancel_review_after_shipment",
            DeadlineKind::RefundOnlyAutoApprove => "refund_only_auto_approve",
            DeadlineKind::CustomerResubmit => "customer_resubmit",
            DeadlineKind::CustomerShipBack => "customer_ship_back",
            DeadlineKind::MerchantConfirmRefund => "merchant_confirm_refund",
            DeadlineKind::CustomerConfirm => "customer_confirm",
            DeadlineKind::ViolationAppeal => "violation_appeal",
            DeadlineKind::ComplaintReply => "complaint_reply",
        }
    }
}

impl fmt::Display for DeadlineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time by which someone must act, and the rule that set it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Deadline {
    pub kind: DeadlineKind,
    pub due_at: Timestamp,
    pub rule_id: RuleId,
}
