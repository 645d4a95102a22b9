//! Webhook signatures: which platform signs its pushes how, and the check of one request
//! (headers and raw body) against the configured secret. Pure: no I/O, no clock, no
//! logging; [`WebhookSecrets`] never prints a secret, not even through `Debug`.
//!
//! A platform with a configured secret must sign every push; one without is accepted as
//! before (the bearer token still applies). docs/HTTP.md, "Signatures", is the reference.
//!
//! - **Douyin (抖店)**: header `event-sign` = lowercase hex MD5 of
//!   `app_key + body + app_secret` over the body's exact bytes. Relied on: the platform's
//!   official Java SDK (`com.doudian.open.core.msg.DoudianOpMsgRequest::checkSign`, which
//!   cites `"yourAppId" + string(body) + "yourSecret"` and hashes with
//!   `SignUtil.stringToMD5`, lowercase hex), the same rule in the community SDKs
//!   (minibear2021/doudian `callback`, which also requires the `app-id` header to equal the
//!   app key; SKIT.FlurlHttpClient.ByteDance.DouyinShop `VerifyEventSignature`, citing
//!   op.jinritemai.com/docs/guide-docs/153/99, which compares case-insensitively), and
//!   shared/domain/PLATFORMS.md. The official SDK signs only *SPI* calls with HMAC-SHA256
//!   (`SignUtil.spiSign`); for message pushes it knows MD5 alone. One third-party service
//!   reads a `sign-method` header and would take `hmac-sha256` there, but no platform
//!   source we could read describes that for pushes, so a `sign-method` other than `md5` is
//!   refused (`bad_signature`, fail closed) rather than guessed. An `app-id` header, when
//!   present, must name the configured app.
//! - **Generic** (every merchant-defined source, our own format): header
//!   `X-Aftersales-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
//! - **Tmall, JD, Pinduoduo, Kuaishou**: no HTTP push with a signature this API could check
//!   (Taobao TMC and Pinduoduo's message service are WebSockets the consumer opens and signs;
//!   JD's after-sales push topics are not public; Kuaishou's push body is AES-encrypted with
//!   the app's message key, not signed). Their pushes are expected through the NATS gateway,
//!   so configuring a secret for them is refused at load.

use std::fmt;

use aftersales_ticket::Platform;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::de::IgnoredAny;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Douyin's signature header.
pub const DOUYIN_HEADER: &str = "event-sign";
/// Douyin's app header: the app key the push is for.
pub const DOUYIN_APP_HEADER: &str = "app-id";
/// Douyin's signing-method header (only `md5` is known for pushes).
pub const DOUYIN_METHOD_HEADER: &str = "sign-method";
/// The generic format's signature header.
pub const GENERIC_HEADER: &str = "x-aftersales-signature";

/// The webhook secrets, per platform (`[http.webhook_secrets]`). `Default` is none at all:
/// every webhook is accepted unsigned, as before signatures existed.
#[derive(Clone, Default, Deserialize)]
#[serde(try_from = "RawSecrets")]
pub struct WebhookSecrets {
    douyin: Option<DouyinSecret>,
    generic: Option<GenericSecret>,
}

/// `[http.webhook_secrets.douyin]`: the 抖店 app's key and secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DouyinSecret {
    pub app_key: String,
    pub app_secret: String,
}

/// `[http.webhook_secrets.generic]`: the HMAC key shared with the merchant's own sources.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSecret {
    pub secret: String,
}

impl fmt::Debug for DouyinSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DouyinSecret(<redacted>)")
    }
}

impl fmt::Debug for GenericSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GenericSecret(<redacted>)")
    }
}

impl fmt::Debug for WebhookSecrets {
    /// Which platforms are configured, never their secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("configured", &self.configured())
            .finish()
    }
}

/// What the config may name; the platforms without a verifiable push are read only to be
/// refused with a reason (`deny_unknown_fields` would only say "unknown field").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    douyin: Option<DouyinSecret>,
    generic: Option<GenericSecret>,
    #[serde(alias = "taobao")]
    tmall: Option<IgnoredAny>,
    jd: Option<IgnoredAny>,
    #[serde(alias = "pinduoduo")]
    pdd: Option<IgnoredAny>,
    kuaishou: Option<IgnoredAny>,
}

/// A `[http.webhook_secrets]` table the API cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "webhook_secrets.{0}: {0}'s pushes carry no signature this API can verify; they are \
         expected through the NATS gateway (aftersales.webhooks.{0}), see docs/HTTP.md"
    )]
    NoHttpSignature(&'static str),
    #[error("webhook_secrets.{platform}.{key} must not be empty")]
    Empty {
        platform: &'static str,
        key: &'static str,
    },
}

impl TryFrom<RawSecrets> for WebhookSecrets {
    type Error = ConfigError;

    fn try_from(raw: RawSecrets) -> Result<Self, ConfigError> {
        for (name, given) in [
            ("tmall", raw.tmall.is_some()),
            ("jd", raw.jd.is_some()),
            ("pdd", raw.pdd.is_some()),
            ("kuaishou", raw.kuaishou.is_some()),
        ] {
            if given {
                return Err(ConfigError::NoHttpSignature(name));
            }
        }
        let empty = |platform, key| ConfigError::Empty { platform, key };
        if let Some(d) = &raw.douyin {
            if d.app_key.is_empty() {
                return Err(empty("douyin", "app_key"));
            }
            if d.app_secret.is_empty() {
                return Err(empty("douyin", "app_secret"));
            }
        }
        if let Some(g) = &raw.generic {
            if g.secret.is_empty() {
                return Err(empty("generic", "secret"));
            }
        }
        Ok(Self {
            douyin: raw.douyin,
            generic: raw.generic,
        })
    }
}

/// Why a request's signature was refused. The message names headers and what was wrong,
/// never a secret or the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this platform's webhooks must be signed: the `{header}` header is missing")]
    Missing { header: &'static str },
    #[error("the `{header}` header is malformed: {reason}")]
    Malformed {
        header: &'static str,
        reason: &'static str,
    },
    #[error("the `{header}` header does not match the body: wrong secret, or the body was changed after signing")]
    Mismatch { header: &'static str },
    #[error("the `sign-method` header says `{0}`; only `md5` is known for Douyin pushes")]
    UnsupportedMethod(String),
    #[error("the `app-id` header names another app than the configured app_key")]
    WrongApp,
}

impl SignatureError {
    /// The API error code: `missing_signature` or `bad_signature`.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing { .. } => "missing_signature",
            _ => "bad_signature",
        }
    }
}

impl WebhookSecrets {
    /// Secrets for Douyin and/or the generic sources (as `[http.webhook_secrets]` would give).
    pub fn new(douyin: Option<DouyinSecret>, generic: Option<GenericSecret>) -> Self {
        Self { douyin, generic }
    }

    /// The platforms whose webhooks must be signed, for logs and `Debug`.
    pub fn configured(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.douyin.is_some() {
            out.push("douyin");
        }
        if self.generic.is_some() {
            out.push("generic");
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.douyin.is_none() && self.generic.is_none()
    }

    /// Checks one webhook: `Ok` when the platform has no secret configured or the signature
    /// matches `body` (the exact bytes received, before any parsing).
    pub fn verify(
        &self,
        platform: &Platform,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        match platform {
            Platform::Douyin => match &self.douyin {
                Some(secret) => verify_douyin(secret, headers, body),
                None => Ok(()),
            },
            Platform::Other(_) => match &self.generic {
                Some(secret) => verify_generic(secret, headers, body),
                None => Ok(()),
            },
            // Refused at load: no secret can be configured for these.
            Platform::Tmall | Platform::Jd | Platform::Pdd | Platform::Kuaishou => Ok(()),
        }
    }
}

/// The one value of `name`, as text; a repeated header is refused rather than picked from.
fn header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SignatureError::Malformed {
            header: name,
            reason: "given more than once",
        });
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| SignatureError::Malformed {
            header: name,
            reason: "not visible ASCII",
        })
}

/// `N` bytes from exactly `2 * N` hex digits, either case.
fn decode_hex<const N: usize>(text: &str, header: &'static str) -> Result<[u8; N], SignatureError> {
    let malformed = |reason| SignatureError::Malformed { header, reason };
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(malformed(if N == 16 {
            "expected 32 hex digits (an MD5)"
        } else {
            "expected 64 hex digits (an HMAC-SHA256)"
        }));
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(malformed("not hex")),
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

fn verify_douyin(
    secret: &DouyinSecret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    if let Some(method) = header(headers, DOUYIN_METHOD_HEADER)? {
        if !method.eq_ignore_ascii_case("md5") {
            return Err(SignatureError::UnsupportedMethod(
                method.chars().take(32).collect(),
            ));
        }
    }
    // The app key is not secret (it travels in this very header): a plain comparison.
    if let Some(app) = header(headers, DOUYIN_APP_HEADER)? {
        if app != secret.app_key {
            return Err(SignatureError::WrongApp);
        }
    }
    let given = header(headers, DOUYIN_HEADER)?.ok_or(SignatureError::Missing {
        header: DOUYIN_HEADER,
    })?;
    let given: [u8; 16] = decode_hex(given, DOUYIN_HEADER)?;
    let expected = douyin_digest(secret, body);
    // Constant time: `subtle`'s ct_eq looks at every byte whatever the first difference.
    if bool::from(expected.ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            header: DOUYIN_HEADER,
        })
    }
}

/// MD5(app_key + body + app_secret).
fn douyin_digest(secret: &DouyinSecret, body: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(secret.app_key.as_bytes());
    md5.update(body);
    md5.update(secret.app_secret.as_bytes());
    md5.finalize().into()
}

fn verify_generic(
    secret: &GenericSecret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let given = header(headers, GENERIC_HEADER)?.ok_or(SignatureError::Missing {
        header: "X-Aftersales-Signature",
    })?;
    let hex = given
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed {
            header: "X-Aftersales-Signature",
            reason: "expected `sha256=<hex>`",
        })?;
    let given: [u8; 32] = decode_hex(hex, "X-Aftersales-Signature")?;
    // HMAC accepts a key of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    // Constant time: `verify_slice` compares through `subtle`, with no early exit.
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch {
            header: "X-Aftersales-Signature",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    // Vectors computed outside this code, each with two independent tools:
    //   python3 -c 'import hashlib; print(hashlib.md5(b"3409409348479354011[{\"tag\":\"200\",\"msg_id\":\"1\",\"data\":{}}]2ad2355c-01d0-11f8-91dc-05a8cd1054b1").hexdigest())'
    //   printf '%s' '3409409348479354011[{"tag":"200","msg_id":"1","data":{}}]2ad2355c-01d0-11f8-91dc-05a8cd1054b1' | md5sum
    const DOUYIN_KEY: &str = "3409409348479354011";
    const DOUYIN_SECRET: &str = "2ad2355c-01d0-11f8-91dc-05a8cd1054b1";
    const DOUYIN_BODY: &[u8] = br#"[{"tag":"200","msg_id":"1","data":{}}]"#;
    const DOUYIN_SIGN: &str = "ab47f6cc51446c4921c6d9937f4e9b28";
    //   python3 -c 'import hmac,hashlib; print(hmac.new(b"generic-secret", b"{\"message_id\":\"m1\"}", hashlib.sha256).hexdigest())'
    //   printf '%s' '{"message_id":"m1"}' | openssl dgst -sha256 -hmac generic-secret
    const GENERIC_SECRET: &str = "generic-secret";
    const GENERIC_BODY: &[u8] = br#"{"message_id":"m1"}"#;
    const GENERIC_SIGN: &str = "75fa9f363076e922138a35977d64f39bcb839f04eb2e10eaeb400856687431c0";

    fn secrets() -> WebhookSecrets {
        WebhookSecrets::new(
            Some(DouyinSecret {
                app_key: DOUYIN_KEY.into(),
                app_secret: DOUYIN_SECRET.into(),
            }),
            Some(GenericSecret {
                secret: GENERIC_SECRET.into(),
            }),
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn myshop() -> Platform {
        "myshop".parse().unwrap()
    }

    #[test]
    fn published_vectors_md5_rfc1321_and_hmac_sha256_rfc4231() {
        // RFC 1321 A.5: MD5("abc"), split as app_key "a" + body "b" + app_secret "c".
        let abc = DouyinSecret {
            app_key: "a".into(),
            app_secret: "c".into(),
        };
        let expected: [u8; 16] = decode_hex("900150983cd24fb0d6963f7d28e17f72", "t").unwrap();
        assert_eq!(douyin_digest(&abc, b"b"), expected);
        // RFC 4231 test case 2.
        let jefe = WebhookSecrets::new(
            None,
            Some(GenericSecret {
                secret: "Jefe".into(),
            }),
        );
        let sign = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let h = headers(&[("X-Aftersales-Signature", sign)]);
        assert_eq!(
            jefe.verify(&myshop(), &h, b"what do ya want for nothing?"),
            Ok(())
        );
    }

    #[test]
    fn douyin_signed_push_passes_in_either_case_and_with_its_app_headers() {
        let s = secrets();
        let ok = |h: HeaderMap| s.verify(&Platform::Douyin, &h, DOUYIN_BODY);
        assert_eq!(ok(headers(&[("event-sign", DOUYIN_SIGN)])), Ok(()));
        let upper = DOUYIN_SIGN.to_ascii_uppercase();
        assert_eq!(ok(headers(&[("Event-Sign", &upper)])), Ok(()));
        assert_eq!(
            ok(headers(&[
                ("event-sign", DOUYIN_SIGN),
                ("app-id", DOUYIN_KEY),
                ("sign-method", "MD5"),
            ])),
            Ok(())
        );
    }

    #[test]
    fn douyin_refusals_say_what_was_wrong() {
        let s = secrets();
        let check = |h: &[(&'static str, &str)], body: &[u8]| {
            s.verify(&Platform::Douyin, &headers(h), body)
        };
        assert_eq!(
            check(&[], DOUYIN_BODY),
            Err(SignatureError::Missing {
                header: "event-sign"
            })
        );
        let mismatch = Err(SignatureError::Mismatch {
            header: "event-sign",
        });
        // A body changed after signing (one byte), and a signature of something else.
        let mut changed = DOUYIN_BODY.to_vec();
        changed[9] = b'1';
        assert_eq!(check(&[("event-sign", DOUYIN_SIGN)], &changed), mismatch);
        assert_eq!(
            check(
                &[("event-sign", "d41d8cd98f00b204e9800998ecf8427e")],
                DOUYIN_BODY
            ),
            mismatch
        );
        for (bad, reason) in [
            ("ab47f6cc", "expected 32 hex digits (an MD5)"),
            ("zz47f6cc51446c4921c6d9937f4e9b28", "not hex"),
        ] {
            assert_eq!(
                check(&[("event-sign", bad)], DOUYIN_BODY),
                Err(SignatureError::Malformed {
                    header: "event-sign",
                    reason
                })
            );
        }
        assert_eq!(
            check(
                &[("event-sign", DOUYIN_SIGN), ("event-sign", DOUYIN_SIGN)],
                DOUYIN_BODY
            ),
            Err(SignatureError::Malformed {
                header: "event-sign",
                reason: "given more than once"
            })
        );
        assert_eq!(
            check(
                &[("event-sign", DOUYIN_SIGN), ("sign-method", "hmac-sha256")],
                DOUYIN_BODY
            ),
            Err(SignatureError::UnsupportedMethod("hmac-sha256".into()))
        );
        assert_eq!(
            check(
                &[("event-sign", DOUYIN_SIGN), ("app-id", "42")],
                DOUYIN_BODY
            ),
            Err(SignatureError::WrongApp)
        );
        assert_eq!(
            check(&[], DOUYIN_BODY).unwrap_err().code(),
            "missing_signature"
        );
        let wrong = check(&[("event-sign", DOUYIN_SIGN)], &changed).unwrap_err();
        assert_eq!(wrong.code(), "bad_signature");
    }

    #[test]
    fn generic_hmac_for_every_merchant_source() {
        let s = secrets();
        let check = |platform: &Platform, h: &[(&'static str, &str)], body: &[u8]| {
            s.verify(platform, &headers(h), body)
        };
        let good = format!("sha256={GENERIC_SIGN}");
        for name in ["myshop", "generic", "other_store"] {
            let p: Platform = name.parse().unwrap();
            assert_eq!(
                check(&p, &[("X-Aftersales-Signature", &good)], GENERIC_BODY),
                Ok(())
            );
        }
        let header = "X-Aftersales-Signature";
        assert_eq!(
            check(&myshop(), &[], GENERIC_BODY),
            Err(SignatureError::Missing { header })
        );
        assert_eq!(
            check(&myshop(), &[(header, &good)], br#"{"message_id":"m2"}"#),
            Err(SignatureError::Mismatch { header })
        );
        assert_eq!(
            check(&myshop(), &[(header, GENERIC_SIGN)], GENERIC_BODY),
            Err(SignatureError::Malformed {
                header,
                reason: "expected `sha256=<hex>`"
            })
        );
        assert_eq!(
            check(&myshop(), &[(header, "sha256=75fa")], GENERIC_BODY),
            Err(SignatureError::Malformed {
                header,
                reason: "expected 64 hex digits (an HMAC-SHA256)"
            })
        );
        // The Douyin secret does not sign generic sources, nor the reverse.
        assert_eq!(
            check(&myshop(), &[("event-sign", DOUYIN_SIGN)], DOUYIN_BODY),
            Err(SignatureError::Missing { header })
        );
    }

    #[test]
    fn without_a_secret_everything_passes_as_before() {
        let none = WebhookSecrets::default();
        for p in ["douyin", "tmall", "jd", "pdd", "kuaishou", "myshop"] {
            let p: Platform = p.parse().unwrap();
            assert_eq!(none.verify(&p, &HeaderMap::new(), b"{}"), Ok(()));
        }
        // Douyin configured does not make the others need a signature.
        let only_douyin = WebhookSecrets::new(secrets().douyin, None);
        assert_eq!(
            only_douyin.verify(&myshop(), &HeaderMap::new(), b"{}"),
            Ok(())
        );
        assert_eq!(
            only_douyin.verify(&Platform::Tmall, &HeaderMap::new(), b"{}"),
            Ok(())
        );
    }

    #[derive(Deserialize)]
    struct Http {
        webhook_secrets: WebhookSecrets,
    }

    fn load(text: &str) -> Result<WebhookSecrets, String> {
        toml::from_str::<Http>(text)
            .map(|h| h.webhook_secrets)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn config_reads_douyin_and_generic_and_debug_shows_no_secret() {
        let s = load(
            r#"
            [webhook_secrets.douyin]
            app_key = "3409409348479354011"
            app_secret = "2ad2355c-01d0-11f8-91dc-05a8cd1054b1"
            [webhook_secrets.generic]
            secret = "generic-secret"
            "#,
        )
        .unwrap();
        assert_eq!(s.configured(), ["douyin", "generic"]);
        let debug = format!("{s:?} {:?} {:?}", s.douyin, s.generic);
        assert_eq!(
            debug,
            r#"WebhookSecrets { configured: ["douyin", "generic"] } Some(DouyinSecret(<redacted>)) Some(GenericSecret(<redacted>))"#
        );
        assert!(load("[webhook_secrets]\n").unwrap().is_empty());
    }

    #[test]
    fn config_refuses_platforms_without_http_signatures_and_empty_secrets() {
        for (table, name) in [
            ("tmall", "tmall"),
            ("taobao", "tmall"),
            ("jd", "jd"),
            ("pdd", "pdd"),
            ("pinduoduo", "pdd"),
            ("kuaishou", "kuaishou"),
        ] {
            let e = load(&format!("[webhook_secrets.{table}]\nsecret = \"x\"\n")).unwrap_err();
            assert!(
                e.contains(&format!("{name}'s pushes carry no signature")),
                "{e}"
            );
            assert!(e.contains("NATS gateway"), "{e}");
        }
        let e = load("[webhook_secrets.generic]\nsecret = \"\"\n").unwrap_err();
        assert!(
            e.contains("webhook_secrets.generic.secret must not be empty"),
            "{e}"
        );
        let e = load("[webhook_secrets.douyin]\napp_key = \"k\"\napp_secret = \"\"\n").unwrap_err();
        assert!(
            e.contains("webhook_secrets.douyin.app_secret must not be empty"),
            "{e}"
        );
        let e = load("[webhook_secrets.douyin]\napp_key = \"k\"\n").unwrap_err();
        assert!(e.contains("app_secret"), "{e}");
        let e = load("[webhook_secrets.generic]\nsecret = \"x\"\nalgo = \"md5\"\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = load("[webhook_secrets.myshop]\nsecret = \"x\"\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
