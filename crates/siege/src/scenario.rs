//! Scenario files (TOML) and DDoSia-style target lists (JSON), parsed and checked before any
//! traffic is sent. Every number has a bound, so a typo cannot ask for a billion connections.

use serde::Deserialize;

/// Longest run.
pub const MAX_DURATION_S: u64 = 3_600;
/// Most connections (or users) one class may hold.
pub const MAX_CONNECTIONS: usize = 20_000;
/// Most source addresses one class may use (127.x.y.z: 2^24 exist; a class gets 2^16).
pub const MAX_SOURCES: usize = 65_536;
/// Most classes in a scenario.
pub const MAX_CLASSES: usize = 32;
/// Most legitimate users in a scenario: each has a /24 of its own in 127.128.0.0/9.
pub const MAX_LEGIT_USERS: usize = 127 * 256;
/// Most requests one connection writes before reading their answers.
pub const MAX_PIPELINE: u32 = 1_000;
/// Longest an open-loop flood waits for the answers of one connection.
pub const MAX_LINGER_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Customers looking up parcels that exist, with think times, like a browser: keep-alive,
    /// browser headers, each on its own /24, solving the challenge when asked and keeping the pass.
    Legit,
    /// Depot batches on the ingest listener.
    Ingest,
    /// GET /v1/parcels/{random}: wrong check digits and valid unknown numbers.
    FloodRandomNumbers,
    /// GET on real lookup paths with random query strings.
    FloodCacheBusting,
    /// GET on random paths.
    FloodRandomPaths,
    /// POST with random bodies.
    FloodPost,
    /// One request per new connection.
    FloodNewConnections,
    /// Connections that send their headers one byte at a time.
    Slowloris,
    /// DDoSia-style random numbers: random query strings and path suffixes, varied
    /// User-Agents, and form posts to `/track`.
    FloodDdosia,
    /// One known parcel, always the same (no query string): a hot cached entry.
    FloodHotParcel,
    /// Legitimate-style lookups of known parcels with browser headers and no think time, as fast
    /// as the node answers: to measure its capacity.
    Lookups,
    /// Requests built from a DDoSia-style target list.
    Targets,
}

impl Kind {
    pub fn is_flood(self) -> bool {
        !matches!(self, Kind::Legit | Kind::Ingest)
    }

    /// Floods of whole requests (not slow connections).
    pub fn is_request_flood(self) -> bool {
        self.is_flood() && self != Kind::Slowloris
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    pub name: String,
    pub kind: Kind,
    /// Requests (batches for ingest) per second for the whole class; 0 = as fast as possible.
    #[serde(default)]
    pub rate: u64,
    /// Legit users (each its own source address).
    #[serde(default = "default_users")]
    pub users: usize,
    /// Pause between a legit user's requests.
    #[serde(default = "default_think")]
    pub think_ms: u64,
    /// Concurrent connections of a flood.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Distinct source addresses of a flood.
    #[serde(default = "default_sources")]
    pub sources: usize,
    /// Requests on one connection before it is closed and reopened from the next source.
    #[serde(default = "default_per_connection")]
    pub requests_per_connection: u32,
    /// Events per ingest batch.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Slowloris: pause between two bytes.
    #[serde(default = "default_byte_interval")]
    pub byte_interval_ms: u64,
    /// Requests written on a connection before their answers are read (1: one at a time).
    #[serde(default = "default_pipeline")]
    pub pipeline: u32,
    /// Seconds into the run before the class starts sending.
    #[serde(default)]
    pub start_s: u64,
    /// When above 0, each connection sends its `requests_per_connection` requests, then waits
    /// for the next multiple of this many seconds after `start_s` (a burst every N seconds).
    #[serde(default)]
    pub burst_every_s: u64,
    /// Request floods: write each connection's requests without waiting for answers and go on
    /// to the next connection at once (the generator's own rate, not the node's); answers are
    /// read on the side for up to `linger_ms`. `connections` then bounds the connections open
    /// at once. Off: each connection waits for its answers, `pipeline` at a time (closed loop).
    #[serde(default)]
    pub open_loop: bool,
    /// Open loop: how long after writing a connection's requests their answers are waited for;
    /// those still missing then are counted `abandoned` and the connection closed.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Legit users: lookups per visit, each visit on a new connection (0: one connection for
    /// the whole run).
    #[serde(default)]
    pub visit_lookups: u32,
    /// Legit users: solve the challenge when answered `403 challenge_required`.
    #[serde(default = "default_true")]
    pub solve_challenges: bool,
}

fn default_users() -> usize {
    50
}
fn default_think() -> u64 {
    500
}
fn default_connections() -> usize {
    64
}
fn default_sources() -> usize {
    10_000
}
fn default_per_connection() -> u32 {
    20
}
fn default_batch() -> usize {
    100
}
fn default_byte_interval() -> u64 {
    1_000
}
fn default_pipeline() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_linger() -> u64 {
    2_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub duration_s: u64,
    /// Whole-run figures count requests started from this second on (a warm-up before it);
    /// the per-second timeline counts everything.
    #[serde(default)]
    pub measure_from_s: u64,
    #[serde(rename = "class")]
    pub classes: Vec<Class>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScenarioError {
    #[error("scenario: {0}")]
    Parse(String),
    #[error("scenario: {0}")]
    Invalid(String),
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |m: String| Err(ScenarioError::Invalid(m));
        if self.duration_s == 0 || self.duration_s > MAX_DURATION_S {
            return invalid(format!("duration_s must be 1 to {MAX_DURATION_S}"));
        }
        if self.classes.is_empty() || self.classes.len() > MAX_CLASSES {
            return invalid(format!("a scenario has 1 to {MAX_CLASSES} classes"));
        }
        if self.measure_from_s >= self.duration_s {
            return invalid("measure_from_s must be less than duration_s".into());
        }
        let legit_users: usize = self
            .classes
            .iter()
            .filter(|c| c.kind == Kind::Legit)
            .map(|c| c.users)
            .sum();
        if legit_users > MAX_LEGIT_USERS {
            return invalid(format!(
                "at most {MAX_LEGIT_USERS} legit users in all (each has its own /24)"
            ));
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.classes {
            if !names.insert(c.name.as_str()) {
                return invalid(format!("two classes are named {:?}", c.name));
            }
            if c.name.is_empty() || c.name.len() > 40 {
                return invalid("class names are 1 to 40 characters".into());
            }
            if c.users == 0 || c.users > MAX_CONNECTIONS {
                return invalid(format!("{}: users must be 1 to {MAX_CONNECTIONS}", c.name));
            }
            if c.connections == 0 || c.connections > MAX_CONNECTIONS {
                return invalid(format!(
                    "{}: connections must be 1 to {MAX_CONNECTIONS}",
                    c.name
                ));
            }
            if c.sources == 0 || c.sources > MAX_SOURCES {
                return invalid(format!("{}: sources must be 1 to {MAX_SOURCES}", c.name));
            }
            if c.batch == 0 || c.batch > 10_000 {
                return invalid(format!("{}: batch must be 1 to 10000", c.name));
            }
            if c.requests_per_connection == 0 {
                return invalid(format!(
                    "{}: requests_per_connection must be at least 1",
                    c.name
                ));
            }
            if c.pipeline == 0 || c.pipeline > MAX_PIPELINE {
                return invalid(format!("{}: pipeline must be 1 to {MAX_PIPELINE}", c.name));
            }
            if c.start_s >= self.duration_s {
                return invalid(format!("{}: start_s must be less than duration_s", c.name));
            }
            if c.linger_ms == 0 || c.linger_ms > MAX_LINGER_MS {
                return invalid(format!(
                    "{}: linger_ms must be 1 to {MAX_LINGER_MS}",
                    c.name
                ));
            }
            if c.open_loop && !c.kind.is_request_flood() {
                return invalid(format!("{}: only request floods can be open_loop", c.name));
            }
            if c.burst_every_s > MAX_DURATION_S {
                return invalid(format!(
                    "{}: burst_every_s must be at most {MAX_DURATION_S}",
                    c.name
                ));
            }
            if c.kind == Kind::Targets {
                return invalid(format!(
                    "{}: `targets` classes come from --targets FILE",
                    c.name
                ));
            }
        }
        Ok(())
    }
}

/// A DDoSia-style target list: targets with `$_N` placeholders in their path and body, and the
/// rules to fill them.
#[derive(Debug, Clone, Deserialize)]
pub struct TargetList {
    pub targets: Vec<Target>,
    #[serde(default)]
    pub randoms: Vec<RandomRule>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    #[serde(default)]
    pub id: Option<String>,
    pub host: String,
    #[serde(default)]
    pub ip: Option<String>,
    pub port: u16,
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub use_ssl: bool,
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct RandomRule {
    pub name: String,
    #[serde(default)]
    pub digit: bool,
    #[serde(default)]
    pub upper: bool,
    #[serde(default)]
    pub lower: bool,
    pub min: usize,
    pub max: usize,
}

/// Longest random string a rule may ask for.
pub const MAX_RANDOM_LEN: usize = 256;

impl TargetList {
    pub fn parse(text: &str) -> Result<TargetList, ScenarioError> {
        let list: TargetList =
            serde_json::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        if list.targets.is_empty() || list.targets.len() > 1_000 {
            return Err(ScenarioError::Invalid(
                "a target list has 1 to 1000 targets".into(),
            ));
        }
        for t in &list.targets {
            if t.use_ssl {
                return Err(ScenarioError::Invalid(format!(
                    "{}: TLS targets are not supported",
                    t.host
                )));
            }
            if !matches!(t.method.as_str(), "GET" | "POST" | "HEAD") {
                return Err(ScenarioError::Invalid(format!(
                    "unsupported method {:?}",
                    t.method
                )));
            }
            if !t.path.starts_with('/')
                || t.path.len() > 2048
                || t.path.bytes().any(|b| b <= b' ' || b == 0x7f)
            {
                return Err(ScenarioError::Invalid(format!("bad path {:?}", t.path)));
            }
        }
        for r in &list.randoms {
            if !r.name.starts_with("$_")
                || r.min > r.max
                || r.max > MAX_RANDOM_LEN
                || !(r.digit || r.upper || r.lower)
            {
                return Err(ScenarioError::Invalid(format!(
                    "bad random rule {:?}",
                    r.name
                )));
            }
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                Some("toml") => {
                    Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    seen += 1;
                }
                Some("json") => {
                    TargetList::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                _ => {}
            }
        }
        assert!(seen >= 5);
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let s = Scenario::parse("name='x'\nduration_s=5\n[[class]]\nname='f'\nkind='flood-post'\n")
            .unwrap();
        assert_eq!(s.classes[0].sources, 10_000);
        assert_eq!(s.classes[0].rate, 0);
        assert_eq!((s.classes[0].pipeline, s.classes[0].start_s), (1, 0));
        assert!(s.classes[0].solve_challenges);
        assert_eq!(s.measure_from_s, 0);
        assert!(s.classes[0].kind.is_flood());
    }

    #[test]
    fn bad_scenarios_are_refused_with_a_reason() {
        let cases = [
            (
                "name='x'\nduration_s=0\n[[class]]\nname='a'\nkind='legit'\n",
                "duration_s",
            ),
            ("name='x'\nduration_s=5\n", "class"),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='nuke'\n",
                "unknown variant",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='legit'\nusers=0\n",
                "users",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='flood-post'\nsources=100000\n",
                "sources",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='flood-post'\nconnections=1000000\n",
                "connections",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='legit'\n[[class]]\nname='a'\nkind='legit'\n",
                "two classes",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='legit'\ncolour='red'\n",
                "unknown field",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='ingest'\nbatch=20000\n",
                "batch",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='flood-post'\npipeline=0\n",
                "pipeline",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='flood-post'\npipeline=100000\n",
                "pipeline",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='flood-post'\nstart_s=5\n",
                "start_s",
            ),
            (
                "name='x'\nduration_s=5\nmeasure_from_s=5\n[[class]]\nname='a'\nkind='legit'\n",
                "measure_from_s",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='legit'\nusers=20000\n[[class]]\nname='b'\nkind='legit'\nusers=20000\n",
                "legit users",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='flood-hot-parcel'\nburst_every_s=100000\n",
                "burst_every_s",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='flood-ddosia'\nopen_loop=true\nlinger_ms=0\n",
                "linger_ms",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='slowloris'\nopen_loop=true\n",
                "open_loop",
            ),
            (
                "name='x'\nduration_s=5\n[[class]]\nname='a'\nkind='legit'\nopen_loop=true\n",
                "open_loop",
            ),
            ("not toml at all [[[", ""),
        ];
        for (text, needle) in cases {
            let err = Scenario::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn target_lists_are_checked() {
        let ok = r#"{"targets":[{"host":"127.0.0.1","port":8080,"path":"/v1/parcels/$_1"}],"randoms":[{"name":"$_1","digit":true,"min":13,"max":13}]}"#;
        assert_eq!(TargetList::parse(ok).unwrap().targets[0].method, "GET");
        for bad in [
            r#"{"targets":[]}"#,
            r#"{"targets":[{"host":"127.0.0.1","port":8080,"path":"/x","use_ssl":true}]}"#,
            r#"{"targets":[{"host":"127.0.0.1","port":8080,"path":"/x","method":"DELETE"}]}"#,
            r#"{"targets":[{"host":"127.0.0.1","port":8080,"path":"no-slash"}]}"#,
            r#"{"targets":[{"host":"127.0.0.1","port":8080,"path":"/a b"}]}"#,
            r#"{"targets":[{"host":"127.0.0.1","port":8080,"path":"/x"}],"randoms":[{"name":"$_1","digit":true,"min":5,"max":1}]}"#,
            r#"{"targets":[{"host":"127.0.0.1","port":8080,"path":"/x"}],"randoms":[{"name":"$_1","min":1,"max":2}]}"#,
            r#"{"targets":[{"host":"127.0.0.1","port":8080,"path":"/x"}],"randoms":[{"name":"$_1","digit":true,"min":1,"max":100000}]}"#,
            "[",
        ] {
            assert!(TargetList::parse(bad).is_err(), "{bad}");
        }
    }
}
