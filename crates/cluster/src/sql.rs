//! The statements behind leases, each one round trip. Time is the store's clock
//! (`clock_timestamp()`) only: replicas compare no clocks of their own.

/// Made once per cluster, by whichever replica starts first (under an advisory lock, so two
/// replicas starting together do not race on DDL). A lease row is never deleted: a released
/// lease expires at `-infinity`, so the key's epoch only ever grows and a stale owner's epoch
/// can never come back.
pub const SCHEMA: &[&str] = &[
    "SELECT pg_advisory_xact_lock(7453210987)",
    "CREATE TABLE IF NOT EXISTS valet_leases (
        class TEXT NOT NULL,
        key TEXT NOT NULL,
        owner TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        endpoint TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (class, key))",
    "CREATE TABLE IF NOT EXISTS valet_nodes (
        node TEXT PRIMARY KEY,
        boot TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL)",
    // A change of owner or epoch, and a release, tell every replica at commit (the NOTIFY is
    // sent in the transaction that made the change); renewals, which change neither, stay
    // silent.
    "CREATE OR REPLACE FUNCTION valet_lease_changed() RETURNS trigger AS $$
     BEGIN
       PERFORM pg_notify('valet_leases', NEW.class || chr(10) || NEW.key);
       RETURN NULL;
     END $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS valet_lease_inserted ON valet_leases",
    "DROP TRIGGER IF EXISTS valet_lease_changed ON valet_leases",
    "CREATE TRIGGER valet_lease_inserted AFTER INSERT ON valet_leases
     FOR EACH ROW EXECUTE FUNCTION valet_lease_changed()",
    "CREATE TRIGGER valet_lease_changed AFTER UPDATE ON valet_leases
     FOR EACH ROW WHEN (OLD.owner IS DISTINCT FROM NEW.owner
                        OR OLD.epoch IS DISTINCT FROM NEW.epoch
                        OR NEW.expires_at = '-infinity')
     EXECUTE FUNCTION valet_lease_changed()",
];

/// Registers this replica under its node name, unless another live replica (another boot id
/// whose registration has not expired) has it. Returns a row when registered.
pub const REGISTER: &str = "
    INSERT INTO valet_nodes AS n (node, boot, endpoint, expires_at)
    VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
    ON CONFLICT (node) DO UPDATE
       SET boot = EXCLUDED.boot, endpoint = EXCLUDED.endpoint, expires_at = EXCLUDED.expires_at
     WHERE n.boot = EXCLUDED.boot OR n.expires_at < clock_timestamp()
    RETURNING node";

/// Whether this boot ($2) still holds its node name ($1): a row when it does.
pub const REGISTERED: &str = "SELECT 1 FROM valet_nodes WHERE node = $1 AND boot = $2";

/// Who holds a node name now, for the refusal's message.
pub const NODE_HOLDER: &str = "
    SELECT endpoint, (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::BIGINT
      FROM valet_nodes WHERE node = $1";

/// Takes a key's lease when it is free, expired, or this replica's own; every claim raises the
/// epoch (also a claim of one's own key again), so a release by an earlier task of this
/// replica can never end a later one's lease. No row: someone else holds it, or the winner of
/// a race has not committed yet: read the owner with [`OWNER`]. Only while this replica's boot
/// holds its node name ($6): a replica whose name another took over (it was paused or cut off
/// past its registration) must not take that one's keys as its own.
pub const CLAIM: &str = "
    INSERT INTO valet_leases AS l (class, key, owner, epoch, endpoint, expires_at)
    SELECT $1, $2, $3, 1, $4, clock_timestamp() + make_interval(secs => $5)
      FROM valet_nodes n WHERE n.node = $3 AND n.boot = $6
    ON CONFLICT (class, key) DO UPDATE
       SET owner = EXCLUDED.owner, epoch = l.epoch + 1, endpoint = EXCLUDED.endpoint,
           expires_at = EXCLUDED.expires_at
     WHERE l.owner = EXCLUDED.owner OR l.expires_at < clock_timestamp()
    RETURNING epoch";

/// The current owner of a key and the milliseconds its lease has left (negative: expired).
/// A released lease (expired at `-infinity`, which no time can be subtracted from) has -1.
pub const OWNER: &str = "
    SELECT owner, epoch, endpoint,
           CASE WHEN expires_at > clock_timestamp()
                THEN (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::BIGINT
                ELSE -1 END
      FROM valet_leases WHERE class = $1 AND key = $2";

/// Renews every lease this replica holds, and its node registration, in one statement. Only
/// rows still this replica's under the same epoch and not yet expired come back: the others
/// are lost. A row of NULLs comes too when the registration was renewed; without it another
/// boot holds the node name, and no lease is renewed (they are that one's to claim now).
pub const RENEW: &str = "
    WITH node AS (
        UPDATE valet_nodes SET expires_at = clock_timestamp() + make_interval(secs => $2)
         WHERE node = $1 AND boot = $6 RETURNING node),
    renewed AS (
        UPDATE valet_leases l SET expires_at = clock_timestamp() + make_interval(secs => $2)
          FROM unnest($3::text[], $4::text[], $5::bigint[]) AS mine(class, key, epoch)
         WHERE l.class = mine.class AND l.key = mine.key AND l.epoch = mine.epoch
           AND l.owner = $1 AND l.expires_at > clock_timestamp()
           AND EXISTS (SELECT 1 FROM node)
        RETURNING l.class, l.key, l.epoch)
    SELECT class, key, epoch FROM renewed
    UNION ALL
    SELECT NULL, NULL, NULL FROM node";

/// Gives a lease up (the instance stopped): it expires now, and the trigger tells everyone.
pub const RELEASE: &str = "
    UPDATE valet_leases SET expires_at = '-infinity'
     WHERE class = $1 AND key = $2 AND owner = $3 AND epoch = $4 AND expires_at > clock_timestamp()";

/// A heartbeat on the change feed: an empty class, then the sending node (a change's payload
/// is `<class>\n<key>`, and a class name is never empty).
pub const HEARTBEAT: &str = "SELECT pg_notify('valet_leases', chr(10) || $1)";

/// Owners of the keys this replica forwards, to notice owners that died (an expiry sends no
/// notification).
pub const OWNERS_OF: &str = "
    SELECT l.class, l.key, l.owner, l.epoch, l.expires_at > clock_timestamp()
      FROM valet_leases l
      JOIN unnest($1::text[], $2::text[]) AS k(class, key) ON l.class = k.class AND l.key = k.key";

/// Held leases, for `/v1/cluster`.
pub const LEASES: &str = "
    SELECT class, key, owner, epoch, endpoint,
           (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::BIGINT
      FROM valet_leases WHERE expires_at > clock_timestamp()
     ORDER BY class, key LIMIT 10000";

/// Registered replicas, for `/v1/cluster`.
pub const NODES: &str = "
    SELECT node, endpoint, expires_at > clock_timestamp() FROM valet_nodes ORDER BY node";
