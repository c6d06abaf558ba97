/* The SQLite store: one connection, used from one thread (the server's
 * store thread), WAL, foreign keys on, prepared statements cached per
 * statement id. It is the only writer of its file.
 *
 * SQL shared with PostgreSQL. Every statement below is written so a
 * PostgreSQL backend can reuse its text after the mechanical change of
 * placeholders ?N -> $N. What differs:
 *  - the migrations (DDL): "INTEGER PRIMARY KEY AUTOINCREMENT" becomes
 *    "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", INTEGER columns
 *    become BIGINT;
 *  - "BEGIN IMMEDIATE" (take the write lock up front) becomes "BEGIN";
 *  - the PRAGMAs at open have no equivalent (PostgreSQL always checks
 *    foreign keys);
 *  - a parameter tested only with IS NULL has no type PostgreSQL can infer:
 *    S_SERIES ?1 and S_NODE_SET_LIVE ?8 need a "::text" cast there.
 * Flags (enabled, online) are INTEGER 0/1 in both so the binds agree;
 * UPSERT (ON CONFLICT ... DO UPDATE, excluded.*) and RETURNING are the
 * same in both. */
#include "server/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/util.h"

/* Migration N (1-based) is migrations[N - 1]; each runs once, in the
 * transaction that records it in schema_version. Append, never edit. */
static const char *const migrations[] = {
    "CREATE TABLE users ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),"
    " role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),"
    " pwhash TEXT NOT NULL,"
    " created INTEGER NOT NULL);"
    "CREATE TABLE tokens ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " hash TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),"
    " user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " expires INTEGER NOT NULL,"
    " created INTEGER NOT NULL);"
    "CREATE INDEX tokens_user ON tokens(user_id);"
    "CREATE TABLE nodes ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),"
    " token_hash TEXT NOT NULL UNIQUE,"
    " online INTEGER NOT NULL DEFAULT 0,"
    " last_seen INTEGER NOT NULL DEFAULT 0,"
    " version TEXT NOT NULL DEFAULT '',"
    " hostname TEXT NOT NULL DEFAULT '',"
    " boot_id TEXT NOT NULL DEFAULT '',"
    " desired_rev INTEGER NOT NULL DEFAULT 0,"
    " applied_rev INTEGER NOT NULL DEFAULT 0,"
    " errors TEXT,"
    " created INTEGER NOT NULL);"
    "CREATE TABLE node_groups ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),"
    " created INTEGER NOT NULL);"
    "CREATE TABLE group_members ("
    " group_id INTEGER NOT NULL REFERENCES node_groups(id) ON DELETE CASCADE,"
    " node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,"
    " PRIMARY KEY (group_id, node_id));"
    "CREATE INDEX group_members_node ON group_members(node_id);"
    "CREATE TABLE forwards ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),"
    " node_id INTEGER REFERENCES nodes(id) ON DELETE CASCADE,"
    " group_id INTEGER REFERENCES node_groups(id) ON DELETE CASCADE,"
    " enabled INTEGER NOT NULL,"
    " port_lo INTEGER NOT NULL,"
    " port_hi INTEGER NOT NULL,"
    " proto INTEGER NOT NULL CHECK (proto BETWEEN 1 AND 3),"
    " json TEXT NOT NULL,"
    " CHECK ((node_id IS NULL) <> (group_id IS NULL)),"
    " CHECK (port_lo BETWEEN 1 AND port_hi AND port_hi <= 65535));"
    "CREATE INDEX forwards_node ON forwards(node_id);"
    "CREATE INDEX forwards_group ON forwards(group_id);"
    "CREATE TABLE config_state ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " rev INTEGER NOT NULL);"
    "INSERT INTO config_state (id, rev) VALUES (1, 0);"
    "CREATE TABLE stats_cursor ("
    " kind TEXT NOT NULL, object_id INTEGER NOT NULL, node_id INTEGER NOT NULL,"
    " boot_id TEXT NOT NULL,"
    " bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL, conns INTEGER NOT NULL,"
    " ts INTEGER NOT NULL,"
    " PRIMARY KEY (kind, object_id, node_id, boot_id));"
    "CREATE TABLE stats_minute ("
    " kind TEXT NOT NULL, object_id INTEGER NOT NULL, node_id INTEGER NOT NULL,"
    " ts INTEGER NOT NULL,"
    " bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL, conns INTEGER NOT NULL,"
    " PRIMARY KEY (kind, object_id, node_id, ts));"
    "CREATE INDEX stats_minute_ts ON stats_minute(ts);"
    "CREATE TABLE stats_hour ("
    " kind TEXT NOT NULL, object_id INTEGER NOT NULL, node_id INTEGER NOT NULL,"
    " ts INTEGER NOT NULL,"
    " bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL, conns INTEGER NOT NULL,"
    " PRIMARY KEY (kind, object_id, node_id, ts));"
    "CREATE TABLE audit ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " ts INTEGER NOT NULL,"
    " who TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " object_kind TEXT NOT NULL,"
    " object_id INTEGER NOT NULL,"
    " before_json TEXT,"
    " after_json TEXT);",
    /* 2: firewall policies and their targets */
    "CREATE TABLE policies ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),"
    " priority INTEGER NOT NULL,"
    " enabled INTEGER NOT NULL,"
    " json TEXT NOT NULL,"
    " created INTEGER NOT NULL);"
    "CREATE TABLE policy_targets ("
    " policy_id INTEGER NOT NULL REFERENCES policies(id) ON DELETE CASCADE,"
    " node_id INTEGER REFERENCES nodes(id) ON DELETE CASCADE,"
    " group_id INTEGER REFERENCES node_groups(id) ON DELETE CASCADE,"
    " CHECK ((node_id IS NULL) <> (group_id IS NULL)));"
    "CREATE INDEX policy_targets_policy ON policy_targets(policy_id);"
    "CREATE INDEX policy_targets_node ON policy_targets(node_id);"
    "CREATE INDEX policy_targets_group ON policy_targets(group_id);",
    /* 3: tunnels; how peers reach a node (address, TLS fingerprint) */
    "ALTER TABLE nodes ADD COLUMN address TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN seen_address TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE tunnels ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),"
    " entry_node_id INTEGER REFERENCES nodes(id) ON DELETE CASCADE,"
    " entry_group_id INTEGER REFERENCES node_groups(id) ON DELETE CASCADE,"
    " enabled INTEGER NOT NULL,"
    " json TEXT NOT NULL,"
    " psk TEXT NOT NULL,"
    " CHECK ((entry_node_id IS NULL) <> (entry_group_id IS NULL)));"
    "CREATE INDEX tunnels_entry_node ON tunnels(entry_node_id);"
    "CREATE INDEX tunnels_entry_group ON tunnels(entry_group_id);"
    "CREATE TABLE tunnel_nodes ("
    " tunnel_id INTEGER NOT NULL REFERENCES tunnels(id) ON DELETE CASCADE,"
    " node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,"
    " PRIMARY KEY (tunnel_id, node_id));"
    "CREATE INDEX tunnel_nodes_node ON tunnel_nodes(node_id);"
    "CREATE TABLE tunnel_ports ("
    " tunnel_id INTEGER NOT NULL REFERENCES tunnels(id) ON DELETE CASCADE,"
    " node_id INTEGER REFERENCES nodes(id) ON DELETE CASCADE,"
    " group_id INTEGER REFERENCES node_groups(id) ON DELETE CASCADE,"
    " port_lo INTEGER NOT NULL,"
    " port_hi INTEGER NOT NULL,"
    " CHECK ((node_id IS NULL) <> (group_id IS NULL)),"
    " CHECK (port_lo BETWEEN 1 AND port_hi AND port_hi <= 65535));"
    "CREATE INDEX tunnel_ports_tunnel ON tunnel_ports(tunnel_id);",
    /* 4: tunnel key rotation. key_id NULL: the id a tunnel's first key has
     * always had (its id, low 32 bits). prev_psk: the previous key, sealed
     * like psk, while links still accept it (a grace period after a
     * rotation); rotated: when (unix seconds), 0 never. */
    "ALTER TABLE tunnels ADD COLUMN key_id INTEGER;"
    "ALTER TABLE tunnels ADD COLUMN prev_psk TEXT;"
    "ALTER TABLE tunnels ADD COLUMN prev_key_id INTEGER;"
    "ALTER TABLE tunnels ADD COLUMN rotated INTEGER NOT NULL DEFAULT 0;",
};

enum stmt_id {
	S_SCHEMA_VERSION,
	S_SCHEMA_INSERT,
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_SP_BEGIN,
	S_SP_RELEASE,
	S_SP_ROLLBACK,
	S_USER_INSERT,
	S_USER_GET,
	S_USER_GET_NAME,
	S_USER_LIST,
	S_USER_SET_PW,
	S_USER_SET_ROLE,
	S_TOKEN_INSERT,
	S_TOKEN_LOOKUP,
	S_TOKEN_DELETE,
	S_TOKEN_PURGE,
	S_NODE_INSERT,
	S_NODE_GET,
	S_NODE_GET_NAME,
	S_NODE_GET_TOKEN,
	S_NODE_LIST,
	S_NODE_EXISTS,
	S_NODE_RENAME,
	S_NODE_DELETE,
	S_NODE_CLEAR_GROUPS,
	S_NODE_GROUPS,
	S_NODE_SET_LIVE,
	S_NODE_BUMP_REV,
	S_NODE_SET_ADDR,
	S_NODE_SET_PEER,
	S_MEMBER_INSERT,
	S_GROUP_INSERT,
	S_GROUP_GET,
	S_GROUP_GET_NAME,
	S_GROUP_LIST,
	S_GROUP_EXISTS,
	S_GROUP_RENAME,
	S_GROUP_DELETE,
	S_GROUP_MEMBERS,
	S_FWD_INSERT,
	S_FWD_GET,
	S_FWD_LIST,
	S_FWD_UPDATE,
	S_FWD_DELETE,
	S_FWD_FOR_NODE,
	S_FWD_CONFLICT,
	S_POL_INSERT,
	S_POL_GET,
	S_POL_GET_NAME,
	S_POL_LIST,
	S_POL_UPDATE,
	S_POL_DELETE,
	S_POL_FOR_NODE,
	S_POL_TARGETS_CLEAR,
	S_POL_TARGET_INSERT,
	S_POL_TARGETS,
	S_TUN_INSERT,
	S_TUN_GET,
	S_TUN_GET_NAME,
	S_TUN_LIST,
	S_TUN_UPDATE,
	S_TUN_DELETE,
	S_TUN_SET_KEYS,
	S_TUN_DELETE_BY_NODE,
	S_TUN_FOR_NODE,
	S_TUN_NODES_CLEAR,
	S_TUN_NODE_INSERT,
	S_TUN_NODES,
	S_TUN_PORTS_CLEAR,
	S_TUN_PORT_INSERT,
	S_TUN_PORTS,
	S_PORT_CONFLICT,
	S_CONFIG_REV,
	S_CONFIG_BUMP,
	S_CURSOR_GET,
	S_CURSOR_PUT,
	S_MINUTE_ADD,
	S_HOUR_ROLLUP,
	S_MINUTE_DELETE,
	S_CURSOR_PRUNE,
	S_SERIES,
	S_AUDIT_INSERT,
	S_AUDIT_LIST,
	S__N
};

#define USER_COLS  "id, name, role, pwhash, created"
#define TOKEN_COLS "id, kind, user_id, expires, created"
#define NODE_COLS                                                                                  \
	"id, name, online, last_seen, version, hostname, boot_id, desired_rev, applied_rev, "      \
	"errors, created, address, seen_address, fingerprint"
#define GROUP_COLS "id, name, created"
#define FWD_COLS   "id, name, node_id, group_id, enabled, port_lo, port_hi, proto, json"
#define POL_COLS   "id, name, priority, enabled, json, created"
#define TUN_COLS                                                                                   \
	"id, name, entry_node_id, entry_group_id, enabled, json, psk,"                             \
	" COALESCE(key_id, id & 4294967295), prev_psk, COALESCE(prev_key_id, 0), rotated"
#define STAT_COLS "kind, object_id, node_id, ts, bytes_up, bytes_down, conns"

static const char *const sql[S__N] = {
    [S_SCHEMA_VERSION] = "SELECT COALESCE(MAX(version), 0) FROM schema_version",
    [S_SCHEMA_INSERT] = "INSERT INTO schema_version (version) VALUES (?1)",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SP_BEGIN] = "SAVEPOINT fg",
    [S_SP_RELEASE] = "RELEASE fg",
    [S_SP_ROLLBACK] = "ROLLBACK TO fg",

    [S_USER_INSERT] = "INSERT INTO users (name, role, pwhash, created) VALUES (?1, ?2, ?3, ?4) "
		      "RETURNING id",
    [S_USER_GET] = "SELECT " USER_COLS " FROM users WHERE id = ?1",
    [S_USER_GET_NAME] = "SELECT " USER_COLS " FROM users WHERE name = ?1",
    [S_USER_LIST] = "SELECT " USER_COLS " FROM users ORDER BY id",
    [S_USER_SET_PW] = "UPDATE users SET pwhash = ?2 WHERE id = ?1",
    [S_USER_SET_ROLE] = "UPDATE users SET role = ?2 WHERE id = ?1",

    [S_TOKEN_INSERT] = "INSERT INTO tokens (kind, user_id, hash, expires, created) "
		       "VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    [S_TOKEN_LOOKUP] = "SELECT " TOKEN_COLS " FROM tokens "
		       "WHERE hash = ?1 AND (expires = 0 OR expires > ?2)",
    [S_TOKEN_DELETE] = "DELETE FROM tokens WHERE id = ?1",
    [S_TOKEN_PURGE] = "DELETE FROM tokens WHERE expires <> 0 AND expires <= ?1",

    [S_NODE_INSERT] = "INSERT INTO nodes (name, token_hash, created) VALUES (?1, ?2, ?3) "
		      "RETURNING id",
    [S_NODE_GET] = "SELECT " NODE_COLS " FROM nodes WHERE id = ?1",
    [S_NODE_GET_NAME] = "SELECT " NODE_COLS " FROM nodes WHERE name = ?1",
    [S_NODE_GET_TOKEN] = "SELECT " NODE_COLS " FROM nodes WHERE token_hash = ?1",
    [S_NODE_LIST] = "SELECT " NODE_COLS " FROM nodes ORDER BY id",
    [S_NODE_EXISTS] = "SELECT id FROM nodes WHERE id = ?1",
    [S_NODE_RENAME] = "UPDATE nodes SET name = ?2 WHERE id = ?1",
    [S_NODE_DELETE] = "DELETE FROM nodes WHERE id = ?1",
    [S_NODE_CLEAR_GROUPS] = "DELETE FROM group_members WHERE node_id = ?1",
    [S_NODE_GROUPS] = "SELECT group_id FROM group_members WHERE node_id = ?1 ORDER BY group_id",
    [S_NODE_SET_LIVE] = "UPDATE nodes SET online = ?2, last_seen = ?3,"
			" version = COALESCE(?4, version), hostname = COALESCE(?5, hostname),"
			" boot_id = COALESCE(?6, boot_id),"
			" applied_rev = CASE WHEN ?7 < 0 THEN applied_rev ELSE ?7 END,"
			" errors = CASE WHEN ?8 IS NULL THEN errors WHEN ?8 = '' THEN NULL"
			" ELSE ?8 END "
			"WHERE id = ?1",
    [S_NODE_BUMP_REV] = "UPDATE nodes SET desired_rev = desired_rev + 1 WHERE id = ?1 "
			"RETURNING desired_rev",
    [S_NODE_SET_ADDR] = "UPDATE nodes SET address = ?2 WHERE id = ?1",
    [S_NODE_SET_PEER] = "UPDATE nodes SET seen_address = COALESCE(?2, seen_address),"
			" fingerprint = COALESCE(?3, fingerprint) WHERE id = ?1",
    [S_MEMBER_INSERT] = "INSERT INTO group_members (node_id, group_id) VALUES (?1, ?2) "
			"ON CONFLICT DO NOTHING",

    [S_GROUP_INSERT] = "INSERT INTO node_groups (name, created) VALUES (?1, ?2) RETURNING id",
    [S_GROUP_GET] = "SELECT " GROUP_COLS " FROM node_groups WHERE id = ?1",
    [S_GROUP_GET_NAME] = "SELECT " GROUP_COLS " FROM node_groups WHERE name = ?1",
    [S_GROUP_LIST] = "SELECT " GROUP_COLS " FROM node_groups ORDER BY id",
    [S_GROUP_EXISTS] = "SELECT id FROM node_groups WHERE id = ?1",
    [S_GROUP_RENAME] = "UPDATE node_groups SET name = ?2 WHERE id = ?1",
    [S_GROUP_DELETE] = "DELETE FROM node_groups WHERE id = ?1",
    [S_GROUP_MEMBERS] = "SELECT node_id FROM group_members WHERE group_id = ?1 ORDER BY node_id",

    [S_FWD_INSERT] = "INSERT INTO forwards"
		     " (name, node_id, group_id, enabled, port_lo, port_hi, proto, json)"
		     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
    [S_FWD_GET] = "SELECT " FWD_COLS " FROM forwards WHERE id = ?1",
    [S_FWD_LIST] = "SELECT " FWD_COLS " FROM forwards ORDER BY id",
    [S_FWD_UPDATE] = "UPDATE forwards SET name = ?2, node_id = ?3, group_id = ?4, enabled = ?5,"
		     " port_lo = ?6, port_hi = ?7, proto = ?8, json = ?9 WHERE id = ?1",
    [S_FWD_DELETE] = "DELETE FROM forwards WHERE id = ?1",
    [S_FWD_FOR_NODE] = "SELECT " FWD_COLS " FROM forwards WHERE node_id = ?1"
		       " OR group_id IN (SELECT group_id FROM group_members WHERE node_id = ?1)"
		       " ORDER BY id",
    /* hit: the nodes the forward (?2 node or ?3 group) lands on. */
    [S_FWD_CONFLICT] = "WITH hit(node_id) AS ("
		       " SELECT id FROM nodes WHERE id = ?2"
		       " UNION SELECT node_id FROM group_members WHERE group_id = ?3) "
		       "SELECT f.id FROM forwards f"
		       " WHERE f.id <> ?1 AND f.port_lo <= ?5 AND f.port_hi >= ?4"
		       " AND (f.proto & ?6) <> 0"
		       " AND (f.group_id = ?3 OR f.node_id IN (SELECT node_id FROM hit)"
		       " OR f.group_id IN (SELECT m.group_id FROM group_members m"
		       " JOIN hit h ON m.node_id = h.node_id))"
		       " ORDER BY f.id LIMIT 1",

    [S_POL_INSERT] = "INSERT INTO policies (name, priority, enabled, json, created)"
		     " VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    [S_POL_GET] = "SELECT " POL_COLS " FROM policies WHERE id = ?1",
    [S_POL_GET_NAME] = "SELECT " POL_COLS " FROM policies WHERE name = ?1",
    [S_POL_LIST] = "SELECT " POL_COLS " FROM policies ORDER BY priority, id",
    [S_POL_UPDATE] = "UPDATE policies SET name = ?2, priority = ?3, enabled = ?4, json = ?5"
		     " WHERE id = ?1",
    [S_POL_DELETE] = "DELETE FROM policies WHERE id = ?1",
    [S_POL_FOR_NODE] = "SELECT " POL_COLS " FROM policies WHERE id IN"
		       " (SELECT policy_id FROM policy_targets WHERE node_id = ?1"
		       " OR group_id IN (SELECT group_id FROM group_members WHERE node_id = ?1))"
		       " ORDER BY priority, id",
    [S_POL_TARGETS_CLEAR] = "DELETE FROM policy_targets WHERE policy_id = ?1",
    [S_POL_TARGET_INSERT] = "INSERT INTO policy_targets (policy_id, node_id, group_id)"
			    " VALUES (?1, ?2, ?3)",
    /* node targets first (group_id NULL), then groups, each by id */
    [S_POL_TARGETS] = "SELECT COALESCE(node_id, 0), COALESCE(group_id, 0) FROM policy_targets"
		      " WHERE policy_id = ?1 ORDER BY group_id IS NOT NULL, node_id, group_id",

    [S_TUN_INSERT] = "INSERT INTO tunnels"
		     " (name, entry_node_id, entry_group_id, enabled, json, psk)"
		     " VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
    [S_TUN_GET] = "SELECT " TUN_COLS " FROM tunnels WHERE id = ?1",
    [S_TUN_GET_NAME] = "SELECT " TUN_COLS " FROM tunnels WHERE name = ?1",
    [S_TUN_LIST] = "SELECT " TUN_COLS " FROM tunnels ORDER BY id",
    [S_TUN_UPDATE] = "UPDATE tunnels SET name = ?2, entry_node_id = ?3, entry_group_id = ?4,"
		     " enabled = ?5, json = ?6, psk = COALESCE(?7, psk) WHERE id = ?1",
    [S_TUN_DELETE] = "DELETE FROM tunnels WHERE id = ?1",
    [S_TUN_SET_KEYS] = "UPDATE tunnels SET psk = ?2, key_id = ?3, prev_psk = ?4,"
		       " prev_key_id = ?5, rotated = ?6 WHERE id = ?1",
    [S_TUN_DELETE_BY_NODE] = "DELETE FROM tunnels WHERE id IN"
			     " (SELECT tunnel_id FROM tunnel_nodes WHERE node_id = ?1)",
    [S_TUN_FOR_NODE] =
	"SELECT " TUN_COLS " FROM tunnels WHERE entry_node_id = ?1"
	" OR entry_group_id IN (SELECT group_id FROM group_members WHERE node_id = ?1)"
	" OR id IN (SELECT tunnel_id FROM tunnel_nodes WHERE node_id = ?1)"
	" ORDER BY id",
    [S_TUN_NODES_CLEAR] = "DELETE FROM tunnel_nodes WHERE tunnel_id = ?1",
    [S_TUN_NODE_INSERT] = "INSERT INTO tunnel_nodes (tunnel_id, node_id) VALUES (?1, ?2)"
			  " ON CONFLICT DO NOTHING",
    [S_TUN_NODES] = "SELECT node_id FROM tunnel_nodes WHERE tunnel_id = ?1 ORDER BY node_id",
    [S_TUN_PORTS_CLEAR] = "DELETE FROM tunnel_ports WHERE tunnel_id = ?1",
    [S_TUN_PORT_INSERT] = "INSERT INTO tunnel_ports (tunnel_id, node_id, group_id, port_lo,"
			  " port_hi) VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_TUN_PORTS] = "SELECT node_id, group_id, port_lo, port_hi FROM tunnel_ports"
		    " WHERE tunnel_id = ?1 ORDER BY port_lo, port_hi, node_id, group_id",
    /* hit: the nodes the claim (?1 node or ?2 group) lands on; hitg: their
     * groups. Forwards first, then tunnels (proto 1 = tcp). */
    [S_PORT_CONFLICT] = "WITH hit(node_id) AS ("
			" SELECT id FROM nodes WHERE id = ?1"
			" UNION SELECT node_id FROM group_members WHERE group_id = ?2),"
			" hitg(group_id) AS (SELECT m.group_id FROM group_members m"
			" JOIN hit h ON m.node_id = h.node_id) "
			"SELECT 1, f.id FROM forwards f"
			" WHERE f.id <> ?6 AND f.port_lo <= ?4 AND f.port_hi >= ?3"
			" AND (f.proto & ?5) <> 0"
			" AND (f.group_id = ?2 OR f.node_id IN (SELECT node_id FROM hit)"
			" OR f.group_id IN (SELECT group_id FROM hitg)) "
			"UNION ALL "
			"SELECT 2, p.tunnel_id FROM tunnel_ports p"
			" WHERE p.tunnel_id <> ?7 AND (?5 & 1) <> 0"
			" AND p.port_lo <= ?4 AND p.port_hi >= ?3"
			" AND (p.group_id = ?2 OR p.node_id IN (SELECT node_id FROM hit)"
			" OR p.group_id IN (SELECT group_id FROM hitg)) "
			"ORDER BY 1, 2 LIMIT 1",

    [S_CONFIG_REV] = "SELECT rev FROM config_state WHERE id = 1",
    [S_CONFIG_BUMP] = "UPDATE config_state SET rev = rev + 1 WHERE id = 1 RETURNING rev",

    [S_CURSOR_GET] = "SELECT bytes_up, bytes_down, conns FROM stats_cursor"
		     " WHERE kind = ?1 AND object_id = ?2 AND node_id = ?3 AND boot_id = ?4",
    [S_CURSOR_PUT] = "INSERT INTO stats_cursor"
		     " (kind, object_id, node_id, boot_id, bytes_up, bytes_down, conns, ts)"
		     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
		     " ON CONFLICT (kind, object_id, node_id, boot_id) DO UPDATE SET"
		     " bytes_up = excluded.bytes_up, bytes_down = excluded.bytes_down,"
		     " conns = excluded.conns, ts = excluded.ts",
    [S_MINUTE_ADD] = "INSERT INTO stats_minute (" STAT_COLS ")"
		     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
		     " ON CONFLICT (kind, object_id, node_id, ts) DO UPDATE SET"
		     " bytes_up = stats_minute.bytes_up + excluded.bytes_up,"
		     " bytes_down = stats_minute.bytes_down + excluded.bytes_down,"
		     " conns = stats_minute.conns + excluded.conns",
    [S_HOUR_ROLLUP] = "INSERT INTO stats_hour (" STAT_COLS ")"
		      " SELECT kind, object_id, node_id, ts - ts % 3600,"
		      " SUM(bytes_up), SUM(bytes_down), SUM(conns) FROM stats_minute"
		      " WHERE ts < ?1 GROUP BY kind, object_id, node_id, ts - ts % 3600"
		      " ON CONFLICT (kind, object_id, node_id, ts) DO UPDATE SET"
		      " bytes_up = stats_hour.bytes_up + excluded.bytes_up,"
		      " bytes_down = stats_hour.bytes_down + excluded.bytes_down,"
		      " conns = stats_hour.conns + excluded.conns",
    [S_MINUTE_DELETE] = "DELETE FROM stats_minute WHERE ts < ?1",
    [S_CURSOR_PRUNE] = "DELETE FROM stats_cursor WHERE ts < ?1 AND EXISTS (SELECT 1 FROM"
		       " stats_cursor n WHERE n.kind = stats_cursor.kind"
		       " AND n.object_id = stats_cursor.object_id"
		       " AND n.node_id = stats_cursor.node_id AND n.ts > stats_cursor.ts)",
    [S_SERIES] = "SELECT ts - ts % ?5, SUM(bytes_up), SUM(bytes_down), SUM(conns) FROM ("
		 " SELECT " STAT_COLS " FROM stats_minute WHERE ts >= ?6 AND ts < ?7"
		 " UNION ALL"
		 " SELECT " STAT_COLS " FROM stats_hour WHERE ts >= ?6 AND ts < ?7) s"
		 " WHERE (?1 IS NULL OR kind = ?1) AND (?2 = 0 OR object_id = ?2)"
		 " AND (?3 = 0 OR node_id = ?3) AND (?4 = 0 OR node_id IN"
		 " (SELECT node_id FROM group_members WHERE group_id = ?4))"
		 " GROUP BY ts - ts % ?5 ORDER BY 1",

    [S_AUDIT_INSERT] = "INSERT INTO audit"
		       " (ts, who, action, object_kind, object_id, before_json, after_json)"
		       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_AUDIT_LIST] = "SELECT id, ts, who, action, object_kind, object_id, before_json,"
		     " after_json FROM audit WHERE (?1 = 0 OR id < ?1) ORDER BY id DESC LIMIT ?2",
};

struct sqlite_store {
	struct fg_store base;
	sqlite3 *db;
	sqlite3_stmt *stmt[S__N];
};

typedef int (*read_fn)(sqlite3_stmt *q, void *out);

static struct sqlite_store *S(struct fg_store *st)
{
	return FG_CONTAINER_OF(st, struct sqlite_store, base);
}

static int64_t now(void)
{
	return time(NULL);
}

/* Maps an (extended) SQLite result code to a negative errno. Constraint
 * violations are the caller's to report; anything else is logged here. */
static int sql_err(struct sqlite_store *s, int rc, enum stmt_id id)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY: return -EEXIST;
	case SQLITE_CONSTRAINT_FOREIGNKEY: return -ENOENT;
	case SQLITE_CONSTRAINT_CHECK:
	case SQLITE_CONSTRAINT_NOTNULL: return -EINVAL;
	}
	fg_err("store: %s: %s", sql[id], sqlite3_errmsg(s->db));
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_FULL: return -ENOSPC;
	default: return -EIO;
	}
}

static void finish(sqlite3_stmt *q)
{
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
}

/* Prepares (once) statement id and binds one parameter per fmt character,
 * numbered from 1: 'i' int64_t, 'n' int64_t with 0 bound as NULL (an id
 * that is "none"), 'd' int, 't' const char * (NULL bound as NULL; the
 * text must stay valid until finish()). */
static int bindv(struct sqlite_store *s, enum stmt_id id, sqlite3_stmt **out, const char *fmt,
		 va_list ap)
{
	sqlite3_stmt *q = s->stmt[id];
	int rc;

	if (!q) {
		rc = sqlite3_prepare_v3(s->db, sql[id], -1, SQLITE_PREPARE_PERSISTENT, &q, NULL);
		if (rc != SQLITE_OK)
			return sql_err(s, rc, id);
		s->stmt[id] = q;
	}
	for (int i = 1; *fmt; fmt++, i++) {
		int64_t v;
		const char *t;
		switch (*fmt) {
		case 'i': rc = sqlite3_bind_int64(q, i, va_arg(ap, int64_t)); break;
		case 'd': rc = sqlite3_bind_int(q, i, va_arg(ap, int)); break;
		case 'n':
			v = va_arg(ap, int64_t);
			rc = v ? sqlite3_bind_int64(q, i, v) : sqlite3_bind_null(q, i);
			break;
		case 't':
			t = va_arg(ap, const char *);
			rc = t ? sqlite3_bind_text(q, i, t, -1, SQLITE_STATIC)
			       : sqlite3_bind_null(q, i);
			break;
		default: FG_BUG_ON(1);
		}
		if (rc != SQLITE_OK) {
			finish(q);
			return sql_err(s, rc, id);
		}
	}
	*out = q;
	return 0;
}

/* Runs a statement that returns no row. changes: -ENOENT if no row was
 * touched (an UPDATE or DELETE by id). */
static int execv_(struct sqlite_store *s, enum stmt_id id, bool changes, const char *fmt,
		  va_list ap)
{
	sqlite3_stmt *q;
	int rc = bindv(s, id, &q, fmt, ap);
	if (rc)
		return rc;
	rc = sqlite3_step(q);
	rc = rc == SQLITE_DONE ? 0 : sql_err(s, sqlite3_extended_errcode(s->db), id);
	finish(q);
	if (!rc && changes && sqlite3_changes(s->db) == 0)
		rc = -ENOENT;
	return rc;
}

static int exec(struct sqlite_store *s, enum stmt_id id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = execv_(s, id, false, fmt, ap);
	va_end(ap);
	return rc;
}

static int change(struct sqlite_store *s, enum stmt_id id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = execv_(s, id, true, fmt, ap);
	va_end(ap);
	return rc;
}

/* Reads the first row into out; -ENOENT if there is none. */
static int row(struct sqlite_store *s, enum stmt_id id, read_fn read, void *out, const char *fmt,
	       ...)
{
	sqlite3_stmt *q;
	va_list ap;
	va_start(ap, fmt);
	int rc = bindv(s, id, &q, fmt, ap);
	va_end(ap);
	if (rc)
		return rc;
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		rc = read(q, out);
	else if (rc == SQLITE_DONE)
		rc = -ENOENT;
	else
		rc = sql_err(s, sqlite3_extended_errcode(s->db), id);
	finish(q);
	return rc;
}

/* Reads every row into a new array of elements of size `size`; deinit
 * (optional) releases what read() allocated in one element. */
static int list(struct sqlite_store *s, enum stmt_id id, size_t size, read_fn read,
		void (*deinit)(void *), void **v, size_t *n, const char *fmt, ...)
{
	sqlite3_stmt *q;
	char *arr = NULL;
	size_t cnt = 0, cap = 0;
	va_list ap;
	va_start(ap, fmt);
	int rc = bindv(s, id, &q, fmt, ap);
	va_end(ap);
	*v = NULL;
	*n = 0;
	if (rc)
		return rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char *na = fg_realloc(arr, ncap * size);
			if (!na) {
				rc = -ENOMEM;
				goto err;
			}
			arr = na;
			cap = ncap;
		}
		memset(arr + cnt * size, 0, size);
		rc = read(q, arr + cnt * size);
		if (rc)
			goto err;
		cnt++;
	}
	if (rc != SQLITE_DONE) {
		rc = sql_err(s, sqlite3_extended_errcode(s->db), id);
		goto err;
	}
	finish(q);
	*v = arr;
	*n = cnt;
	return 0;
err:
	finish(q);
	for (size_t i = 0; deinit && i < cnt; i++)
		deinit(arr + i * size);
	fg_free(arr);
	return rc;
}

/* An atomic section inside or outside tx_begin(). sp_end() releases it on
 * rc == 0, else rolls it back, and returns the outcome. */
static int sp_begin(struct sqlite_store *s)
{
	return exec(s, S_SP_BEGIN, "");
}

static int sp_end(struct sqlite_store *s, int rc)
{
	if (!rc && !(rc = exec(s, S_SP_RELEASE, "")))
		return 0;
	exec(s, S_SP_ROLLBACK, "");
	exec(s, S_SP_RELEASE, "");
	return rc;
}

static void col_copy(sqlite3_stmt *q, int i, char *dst, size_t size)
{
	const unsigned char *t = sqlite3_column_text(q, i);
	snprintf(dst, size, "%s", t ? (const char *)t : "");
}

/* NULL stays NULL; returns -ENOMEM if the copy fails. */
static int col_dup(sqlite3_stmt *q, int i, char **dst)
{
	const unsigned char *t = sqlite3_column_text(q, i);
	*dst = t ? fg_strdup((const char *)t) : NULL;
	return t && !*dst ? -ENOMEM : 0;
}

static int read_id(sqlite3_stmt *q, void *out)
{
	*(int64_t *)out = sqlite3_column_int64(q, 0);
	return 0;
}

static int read_int(sqlite3_stmt *q, void *out)
{
	*(int *)out = sqlite3_column_int(q, 0);
	return 0;
}

static int read_counters(sqlite3_stmt *q, void *out)
{
	struct fg_counters *c = out;
	c->bytes_up = sqlite3_column_int64(q, 0);
	c->bytes_down = sqlite3_column_int64(q, 1);
	c->conns = sqlite3_column_int64(q, 2);
	return 0;
}

static int read_user(sqlite3_stmt *q, void *out)
{
	struct fg_user *u = out;
	u->id = sqlite3_column_int64(q, 0);
	col_copy(q, 1, u->name, sizeof(u->name));
	col_copy(q, 3, u->pwhash, sizeof(u->pwhash));
	u->created = sqlite3_column_int64(q, 4);
	return fg_role_parse((const char *)sqlite3_column_text(q, 2), &u->role);
}

static int read_token(sqlite3_stmt *q, void *out)
{
	struct fg_token *t = out;
	t->id = sqlite3_column_int64(q, 0);
	t->user_id = sqlite3_column_int64(q, 2);
	t->expires = sqlite3_column_int64(q, 3);
	t->created = sqlite3_column_int64(q, 4);
	return fg_token_kind_parse((const char *)sqlite3_column_text(q, 1), &t->kind);
}

static int read_node(sqlite3_stmt *q, void *out)
{
	struct fg_node *n = out;
	n->id = sqlite3_column_int64(q, 0);
	col_copy(q, 1, n->name, sizeof(n->name));
	n->online = sqlite3_column_int(q, 2);
	n->last_seen = sqlite3_column_int64(q, 3);
	col_copy(q, 4, n->version, sizeof(n->version));
	col_copy(q, 5, n->hostname, sizeof(n->hostname));
	col_copy(q, 6, n->boot_id, sizeof(n->boot_id));
	n->desired_rev = sqlite3_column_int64(q, 7);
	n->applied_rev = sqlite3_column_int64(q, 8);
	n->created = sqlite3_column_int64(q, 10);
	col_copy(q, 11, n->address, sizeof(n->address));
	col_copy(q, 12, n->seen_address, sizeof(n->seen_address));
	col_copy(q, 13, n->fingerprint, sizeof(n->fingerprint));
	return col_dup(q, 9, &n->errors);
}

static int read_group(sqlite3_stmt *q, void *out)
{
	struct fg_group *g = out;
	g->id = sqlite3_column_int64(q, 0);
	col_copy(q, 1, g->name, sizeof(g->name));
	g->created = sqlite3_column_int64(q, 2);
	return 0;
}

static int read_forward(sqlite3_stmt *q, void *out)
{
	struct fg_forward *f = out;
	f->id = sqlite3_column_int64(q, 0);
	col_copy(q, 1, f->name, sizeof(f->name));
	f->node_id = sqlite3_column_int64(q, 2);
	f->group_id = sqlite3_column_int64(q, 3);
	f->enabled = sqlite3_column_int(q, 4);
	f->port_lo = sqlite3_column_int(q, 5);
	f->port_hi = sqlite3_column_int(q, 6);
	f->proto = sqlite3_column_int(q, 7);
	return col_dup(q, 8, &f->json);
}

static int read_policy(sqlite3_stmt *q, void *out)
{
	struct fg_policy *p = out;
	memset(p, 0, sizeof(*p));
	p->id = sqlite3_column_int64(q, 0);
	col_copy(q, 1, p->name, sizeof(p->name));
	p->priority = sqlite3_column_int(q, 2);
	p->enabled = sqlite3_column_int(q, 3);
	p->created = sqlite3_column_int64(q, 5);
	return col_dup(q, 4, &p->json);
}

struct target_row {
	int64_t node_id, group_id;
};

static int read_target(sqlite3_stmt *q, void *out)
{
	struct target_row *t = out;
	t->node_id = sqlite3_column_int64(q, 0);
	t->group_id = sqlite3_column_int64(q, 1);
	return 0;
}

static int read_tunnel(sqlite3_stmt *q, void *out)
{
	struct fg_tunnel *t = out;
	t->id = sqlite3_column_int64(q, 0);
	col_copy(q, 1, t->name, sizeof(t->name));
	t->entry_node_id = sqlite3_column_int64(q, 2);
	t->entry_group_id = sqlite3_column_int64(q, 3);
	t->enabled = sqlite3_column_int(q, 4);
	t->key_id = sqlite3_column_int64(q, 7);
	t->prev_key_id = sqlite3_column_int64(q, 9);
	t->rotated = sqlite3_column_int64(q, 10);
	if (col_dup(q, 5, &t->json) || col_dup(q, 6, &t->psk) || col_dup(q, 8, &t->prev_psk)) {
		fg_tunnel_deinit(t);
		return -ENOMEM;
	}
	return 0;
}

static int read_port(sqlite3_stmt *q, void *out)
{
	struct fg_tunnel_port *p = out;
	p->node_id = sqlite3_column_int64(q, 0);
	p->group_id = sqlite3_column_int64(q, 1);
	p->port_lo = (uint16_t)sqlite3_column_int(q, 2);
	p->port_hi = (uint16_t)sqlite3_column_int(q, 3);
	return 0;
}

static int read_conflict(sqlite3_stmt *q, void *out)
{
	int64_t *v = out;
	v[0] = sqlite3_column_int64(q, 0);
	v[1] = sqlite3_column_int64(q, 1);
	return 0;
}

static int read_bucket(sqlite3_stmt *q, void *out)
{
	struct fg_stat_bucket *b = out;
	b->ts = sqlite3_column_int64(q, 0);
	b->sum.bytes_up = sqlite3_column_int64(q, 1);
	b->sum.bytes_down = sqlite3_column_int64(q, 2);
	b->sum.conns = sqlite3_column_int64(q, 3);
	return 0;
}

static void audit_deinit(void *p)
{
	struct fg_audit_event *e = p;
	fg_free(e->who);
	fg_free(e->action);
	fg_free(e->object_kind);
	fg_free(e->before);
	fg_free(e->after);
}

static int read_audit(sqlite3_stmt *q, void *out)
{
	struct fg_audit_event *e = out;
	e->id = sqlite3_column_int64(q, 0);
	e->ts = sqlite3_column_int64(q, 1);
	e->object_id = sqlite3_column_int64(q, 5);
	if (col_dup(q, 2, &e->who) || col_dup(q, 3, &e->action) || col_dup(q, 4, &e->object_kind) ||
	    col_dup(q, 6, &e->before) || col_dup(q, 7, &e->after)) {
		audit_deinit(e);
		return -ENOMEM;
	}
	return 0;
}

static void node_deinit_cb(void *p)
{
	fg_node_deinit(p);
}

static void forward_deinit_cb(void *p)
{
	fg_forward_deinit(p);
}

static void policy_deinit_cb(void *p)
{
	fg_policy_deinit(p);
}

static void tunnel_deinit_cb(void *p)
{
	fg_tunnel_deinit(p);
}

/* ---- ops ---- */

static void sqlite_close(struct fg_store *st)
{
	struct sqlite_store *s = S(st);
	for (int i = 0; i < S__N; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	fg_free(s);
}

static int schema_version(struct fg_store *st, int *version)
{
	return row(S(st), S_SCHEMA_VERSION, read_int, version, "");
}

static int tx_begin(struct fg_store *st)
{
	return exec(S(st), S_BEGIN, "");
}

static int tx_commit(struct fg_store *st)
{
	return exec(S(st), S_COMMIT, "");
}

static void tx_rollback(struct fg_store *st)
{
	exec(S(st), S_ROLLBACK, "");
}

static int user_create(struct fg_store *st, const char *name, enum fg_role role, const char *pwhash,
		       int64_t *id)
{
	return row(S(st), S_USER_INSERT, read_id, id, "ttti", name, fg_role_name(role), pwhash,
		   now());
}

static int user_get(struct fg_store *st, int64_t id, struct fg_user *out)
{
	return row(S(st), S_USER_GET, read_user, out, "i", id);
}

static int user_get_by_name(struct fg_store *st, const char *name, struct fg_user *out)
{
	return row(S(st), S_USER_GET_NAME, read_user, out, "t", name);
}

static int user_list(struct fg_store *st, struct fg_user **v, size_t *n)
{
	return list(S(st), S_USER_LIST, sizeof(**v), read_user, NULL, (void **)v, n, "");
}

static int user_set_password(struct fg_store *st, int64_t id, const char *pwhash)
{
	return change(S(st), S_USER_SET_PW, "it", id, pwhash);
}

static int user_set_role(struct fg_store *st, int64_t id, enum fg_role role)
{
	return change(S(st), S_USER_SET_ROLE, "it", id, fg_role_name(role));
}

static int token_create(struct fg_store *st, enum fg_token_kind kind, int64_t user_id,
			const char *hash, int64_t expires, int64_t *id)
{
	return row(S(st), S_TOKEN_INSERT, read_id, id, "titii", fg_token_kind_name(kind), user_id,
		   hash, expires, now());
}

static int token_lookup(struct fg_store *st, const char *hash, int64_t t, struct fg_token *out)
{
	return row(S(st), S_TOKEN_LOOKUP, read_token, out, "ti", hash, t);
}

static int token_delete(struct fg_store *st, int64_t id)
{
	return change(S(st), S_TOKEN_DELETE, "i", id);
}

static int token_purge_expired(struct fg_store *st, int64_t t)
{
	return exec(S(st), S_TOKEN_PURGE, "i", t);
}

static int node_create(struct fg_store *st, const char *name, const char *token_hash, int64_t *id)
{
	return row(S(st), S_NODE_INSERT, read_id, id, "tti", name, token_hash, now());
}

static int node_get(struct fg_store *st, int64_t id, struct fg_node *out)
{
	memset(out, 0, sizeof(*out));
	return row(S(st), S_NODE_GET, read_node, out, "i", id);
}

static int node_get_by_name(struct fg_store *st, const char *name, struct fg_node *out)
{
	memset(out, 0, sizeof(*out));
	return row(S(st), S_NODE_GET_NAME, read_node, out, "t", name);
}

static int node_get_by_token(struct fg_store *st, const char *token_hash, struct fg_node *out)
{
	memset(out, 0, sizeof(*out));
	return row(S(st), S_NODE_GET_TOKEN, read_node, out, "t", token_hash);
}

static int node_list(struct fg_store *st, struct fg_node **v, size_t *n)
{
	return list(S(st), S_NODE_LIST, sizeof(**v), read_node, node_deinit_cb, (void **)v, n, "");
}

static int node_rename(struct fg_store *st, int64_t id, const char *name)
{
	return change(S(st), S_NODE_RENAME, "it", id, name);
}

static int node_delete(struct fg_store *st, int64_t id)
{
	struct sqlite_store *s = S(st);
	int rc = sp_begin(s);
	if (rc)
		return rc;
	/* its own tunnels (entry) go by cascade; those it is a hop or exit
	 * of cannot run without it either */
	rc = exec(s, S_TUN_DELETE_BY_NODE, "i", id);
	if (!rc)
		rc = change(s, S_NODE_DELETE, "i", id);
	return sp_end(s, rc);
}

static int node_set_groups(struct fg_store *st, int64_t id, const int64_t *group_ids, size_t n)
{
	struct sqlite_store *s = S(st);
	int64_t found;
	int rc = sp_begin(s);
	if (rc)
		return rc;
	rc = row(s, S_NODE_EXISTS, read_id, &found, "i", id);
	if (!rc)
		rc = exec(s, S_NODE_CLEAR_GROUPS, "i", id);
	for (size_t i = 0; !rc && i < n; i++)
		rc = exec(s, S_MEMBER_INSERT, "ii", id, group_ids[i]);
	return sp_end(s, rc);
}

static int node_groups(struct fg_store *st, int64_t id, int64_t **group_ids, size_t *n)
{
	struct sqlite_store *s = S(st);
	int64_t found;
	int rc = row(s, S_NODE_EXISTS, read_id, &found, "i", id);
	if (rc)
		return rc;
	return list(s, S_NODE_GROUPS, sizeof(int64_t), read_id, NULL, (void **)group_ids, n, "i",
		    id);
}

static int node_set_live(struct fg_store *st, int64_t id, const struct fg_node_live *l)
{
	return change(S(st), S_NODE_SET_LIVE, "iditttit", id, (int)l->online, l->last_seen,
		      l->version, l->hostname, l->boot_id, l->applied_rev, l->errors);
}

static int node_bump_desired_rev(struct fg_store *st, int64_t id, int64_t *rev)
{
	return row(S(st), S_NODE_BUMP_REV, read_id, rev, "i", id);
}

static int node_set_address(struct fg_store *st, int64_t id, const char *address)
{
	return change(S(st), S_NODE_SET_ADDR, "it", id, address ? address : "");
}

static int node_set_peer(struct fg_store *st, int64_t id, const char *seen_address,
			 const char *fingerprint)
{
	return change(S(st), S_NODE_SET_PEER, "itt", id, seen_address, fingerprint);
}

static int group_create(struct fg_store *st, const char *name, int64_t *id)
{
	return row(S(st), S_GROUP_INSERT, read_id, id, "ti", name, now());
}

static int group_get(struct fg_store *st, int64_t id, struct fg_group *out)
{
	return row(S(st), S_GROUP_GET, read_group, out, "i", id);
}

static int group_get_by_name(struct fg_store *st, const char *name, struct fg_group *out)
{
	return row(S(st), S_GROUP_GET_NAME, read_group, out, "t", name);
}

static int group_list(struct fg_store *st, struct fg_group **v, size_t *n)
{
	return list(S(st), S_GROUP_LIST, sizeof(**v), read_group, NULL, (void **)v, n, "");
}

static int group_rename(struct fg_store *st, int64_t id, const char *name)
{
	return change(S(st), S_GROUP_RENAME, "it", id, name);
}

static int group_delete(struct fg_store *st, int64_t id)
{
	return change(S(st), S_GROUP_DELETE, "i", id);
}

static int group_members(struct fg_store *st, int64_t id, int64_t **node_ids, size_t *n)
{
	struct sqlite_store *s = S(st);
	int64_t found;
	int rc = row(s, S_GROUP_EXISTS, read_id, &found, "i", id);
	if (rc)
		return rc;
	return list(s, S_GROUP_MEMBERS, sizeof(int64_t), read_id, NULL, (void **)node_ids, n, "i",
		    id);
}

static int forward_create(struct fg_store *st, struct fg_forward *f)
{
	return row(S(st), S_FWD_INSERT, read_id, &f->id, "tnnddddt", f->name, f->node_id,
		   f->group_id, (int)f->enabled, (int)f->port_lo, (int)f->port_hi, (int)f->proto,
		   f->json);
}

static int forward_get(struct fg_store *st, int64_t id, struct fg_forward *out)
{
	memset(out, 0, sizeof(*out));
	return row(S(st), S_FWD_GET, read_forward, out, "i", id);
}

static int forward_list(struct fg_store *st, struct fg_forward **v, size_t *n)
{
	return list(S(st), S_FWD_LIST, sizeof(**v), read_forward, forward_deinit_cb, (void **)v, n,
		    "");
}

static int forward_update(struct fg_store *st, const struct fg_forward *f)
{
	return change(S(st), S_FWD_UPDATE, "itnnddddt", f->id, f->name, f->node_id, f->group_id,
		      (int)f->enabled, (int)f->port_lo, (int)f->port_hi, (int)f->proto, f->json);
}

static int forward_delete(struct fg_store *st, int64_t id)
{
	return change(S(st), S_FWD_DELETE, "i", id);
}

static int forwards_for_node(struct fg_store *st, int64_t node_id, struct fg_forward **v, size_t *n)
{
	return list(S(st), S_FWD_FOR_NODE, sizeof(**v), read_forward, forward_deinit_cb, (void **)v,
		    n, "i", node_id);
}

static int forward_conflict(struct fg_store *st, const struct fg_forward *f, int64_t *other_id)
{
	int rc = row(S(st), S_FWD_CONFLICT, read_id, other_id, "innddd", f->id, f->node_id,
		     f->group_id, (int)f->port_lo, (int)f->port_hi, (int)f->proto);
	return rc == -ENOENT ? 0 : rc == 0 ? -EEXIST : rc;
}

/* Reads p's targets into p->node_ids / p->group_ids. */
static int policy_load_targets(struct sqlite_store *s, struct fg_policy *p)
{
	struct target_row *t;
	size_t n;
	int rc = list(s, S_POL_TARGETS, sizeof(*t), read_target, NULL, (void **)&t, &n, "i", p->id);
	if (rc)
		return rc;
	p->node_ids = fg_calloc(n + 1, sizeof(int64_t));
	p->group_ids = fg_calloc(n + 1, sizeof(int64_t));
	if (!p->node_ids || !p->group_ids) {
		fg_free(t);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (t[i].node_id)
			p->node_ids[p->nnodes++] = t[i].node_id;
		else
			p->group_ids[p->ngroups++] = t[i].group_id;
	}
	fg_free(t);
	return 0;
}

static int policy_load_all_targets(struct sqlite_store *s, struct fg_policy *v, size_t n, int rc)
{
	for (size_t i = 0; !rc && i < n; i++)
		rc = policy_load_targets(s, &v[i]);
	if (rc) {
		fg_policy_list_free(v, n);
		return rc;
	}
	return 0;
}

static int policy_write_targets(struct sqlite_store *s, const struct fg_policy *p, int64_t id)
{
	int rc = exec(s, S_POL_TARGETS_CLEAR, "i", id);
	for (size_t i = 0; !rc && i < p->nnodes; i++)
		rc = exec(s, S_POL_TARGET_INSERT, "inn", id, p->node_ids[i], (int64_t)0);
	for (size_t i = 0; !rc && i < p->ngroups; i++)
		rc = exec(s, S_POL_TARGET_INSERT, "inn", id, (int64_t)0, p->group_ids[i]);
	return rc;
}

static int policy_create(struct fg_store *st, struct fg_policy *p)
{
	struct sqlite_store *s = S(st);
	int rc = sp_begin(s);
	if (rc)
		return rc;
	rc = row(s, S_POL_INSERT, read_id, &p->id, "tddti", p->name, p->priority, (int)p->enabled,
		 p->json, now());
	if (!rc)
		rc = policy_write_targets(s, p, p->id);
	return sp_end(s, rc);
}

static int policy_get(struct fg_store *st, int64_t id, struct fg_policy *out)
{
	int rc = row(S(st), S_POL_GET, read_policy, out, "i", id);
	if (rc)
		return rc;
	rc = policy_load_targets(S(st), out);
	if (rc)
		fg_policy_deinit(out);
	return rc;
}

static int policy_get_by_name(struct fg_store *st, const char *name, struct fg_policy *out)
{
	int rc = row(S(st), S_POL_GET_NAME, read_policy, out, "t", name);
	if (rc)
		return rc;
	rc = policy_load_targets(S(st), out);
	if (rc)
		fg_policy_deinit(out);
	return rc;
}

static int policy_list(struct fg_store *st, struct fg_policy **v, size_t *n)
{
	int rc =
	    list(S(st), S_POL_LIST, sizeof(**v), read_policy, policy_deinit_cb, (void **)v, n, "");
	return rc ? rc : policy_load_all_targets(S(st), *v, *n, 0);
}

static int policy_update(struct fg_store *st, const struct fg_policy *p)
{
	struct sqlite_store *s = S(st);
	int rc = sp_begin(s);
	if (rc)
		return rc;
	rc =
	    change(s, S_POL_UPDATE, "itddt", p->id, p->name, p->priority, (int)p->enabled, p->json);
	if (!rc)
		rc = policy_write_targets(s, p, p->id);
	return sp_end(s, rc);
}

static int policy_delete(struct fg_store *st, int64_t id)
{
	return change(S(st), S_POL_DELETE, "i", id);
}

static int policies_for_node(struct fg_store *st, int64_t node_id, struct fg_policy **v, size_t *n)
{
	int rc = list(S(st), S_POL_FOR_NODE, sizeof(**v), read_policy, policy_deinit_cb, (void **)v,
		      n, "i", node_id);
	return rc ? rc : policy_load_all_targets(S(st), *v, *n, 0);
}

/* Reads the nodes and ports of a tunnel row just read. */
static int tunnel_parts(struct sqlite_store *s, struct fg_tunnel *t)
{
	int rc = list(s, S_TUN_NODES, sizeof(int64_t), read_id, NULL, (void **)&t->nodes,
		      &t->nnodes, "i", t->id);
	if (!rc)
		rc = list(s, S_TUN_PORTS, sizeof(*t->ports), read_port, NULL, (void **)&t->ports,
			  &t->nports, "i", t->id);
	return rc;
}

/* One tunnel by id (name NULL) or by name. */
static int tunnel_one(struct sqlite_store *s, int64_t id, const char *name, struct fg_tunnel *out)
{
	memset(out, 0, sizeof(*out));
	int rc = name ? row(s, S_TUN_GET_NAME, read_tunnel, out, "t", name)
		      : row(s, S_TUN_GET, read_tunnel, out, "i", id);
	if (!rc && (rc = tunnel_parts(s, out)))
		fg_tunnel_deinit(out);
	return rc;
}

static int tunnel_many(struct sqlite_store *s, enum stmt_id id, struct fg_tunnel **v, size_t *n,
		       int64_t arg)
{
	int rc =
	    id == S_TUN_LIST
		? list(s, id, sizeof(**v), read_tunnel, tunnel_deinit_cb, (void **)v, n, "")
		: list(s, id, sizeof(**v), read_tunnel, tunnel_deinit_cb, (void **)v, n, "i", arg);
	for (size_t i = 0; !rc && i < *n; i++)
		rc = tunnel_parts(s, &(*v)[i]);
	if (rc) {
		fg_tunnel_list_free(*v, *n);
		*v = NULL;
		*n = 0;
	}
	return rc;
}

/* Replaces the tunnel's node and port rows with t's. */
static int tunnel_put_parts(struct sqlite_store *s, const struct fg_tunnel *t)
{
	int rc = exec(s, S_TUN_NODES_CLEAR, "i", t->id);
	if (!rc)
		rc = exec(s, S_TUN_PORTS_CLEAR, "i", t->id);
	for (size_t i = 0; !rc && i < t->nnodes; i++)
		rc = exec(s, S_TUN_NODE_INSERT, "ii", t->id, t->nodes[i]);
	for (size_t i = 0; !rc && i < t->nports; i++) {
		const struct fg_tunnel_port *p = &t->ports[i];
		rc = exec(s, S_TUN_PORT_INSERT, "innii", t->id, p->node_id, p->group_id,
			  (int64_t)p->port_lo, (int64_t)p->port_hi);
	}
	return rc;
}

static int tunnel_create(struct fg_store *st, struct fg_tunnel *t)
{
	struct sqlite_store *s = S(st);
	if (!t->psk)
		return -EINVAL;
	int rc = sp_begin(s);
	if (rc)
		return rc;
	rc = row(s, S_TUN_INSERT, read_id, &t->id, "tnndtt", t->name, t->entry_node_id,
		 t->entry_group_id, (int)t->enabled, t->json, t->psk);
	if (!rc)
		rc = tunnel_put_parts(s, t);
	rc = sp_end(s, rc);
	if (rc)
		t->id = 0;
	return rc;
}

static int tunnel_get(struct fg_store *st, int64_t id, struct fg_tunnel *out)
{
	return tunnel_one(S(st), id, NULL, out);
}

static int tunnel_get_by_name(struct fg_store *st, const char *name, struct fg_tunnel *out)
{
	return tunnel_one(S(st), 0, name, out);
}

static int tunnel_list(struct fg_store *st, struct fg_tunnel **v, size_t *n)
{
	return tunnel_many(S(st), S_TUN_LIST, v, n, 0);
}

static int tunnel_update(struct fg_store *st, const struct fg_tunnel *t)
{
	struct sqlite_store *s = S(st);
	int rc = sp_begin(s);
	if (rc)
		return rc;
	rc = change(s, S_TUN_UPDATE, "itnndtt", t->id, t->name, t->entry_node_id, t->entry_group_id,
		    (int)t->enabled, t->json, t->psk);
	if (!rc)
		rc = tunnel_put_parts(s, t);
	return sp_end(s, rc);
}

static int tunnel_set_keys(struct fg_store *st, int64_t id, const char *psk, int64_t key_id,
			   const char *prev_psk, int64_t prev_key_id, int64_t rotated)
{
	if (!psk)
		return -EINVAL;
	return change(S(st), S_TUN_SET_KEYS, "ititii", id, psk, key_id, prev_psk, prev_key_id,
		      rotated);
}

static int tunnel_delete(struct fg_store *st, int64_t id)
{
	return change(S(st), S_TUN_DELETE, "i", id);
}

static int tunnels_for_node(struct fg_store *st, int64_t node_id, struct fg_tunnel **v, size_t *n)
{
	return tunnel_many(S(st), S_TUN_FOR_NODE, v, n, node_id);
}

static int port_conflict(struct fg_store *st, const struct fg_port_claim *c, const char **kind,
			 int64_t *other_id)
{
	int64_t hit[2];
	int rc = row(S(st), S_PORT_CONFLICT, read_conflict, hit, "nniidii", c->node_id, c->group_id,
		     (int64_t)c->port_lo, (int64_t)c->port_hi, (int)c->proto, c->skip_forward,
		     c->skip_tunnel);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	*kind = hit[0] == 1 ? "forward" : "tunnel";
	*other_id = hit[1];
	return -EEXIST;
}

static int config_rev(struct fg_store *st, int64_t *rev)
{
	return row(S(st), S_CONFIG_REV, read_id, rev, "");
}

static int config_bump(struct fg_store *st, int64_t *rev)
{
	return row(S(st), S_CONFIG_BUMP, read_id, rev, "");
}

static int record_counters(struct fg_store *st, const char *kind, int64_t object_id,
			   int64_t node_id, const char *boot_id, const struct fg_counters *abs,
			   int64_t ts, struct fg_counters *delta)
{
	struct sqlite_store *s = S(st);
	struct fg_counters last, d = *abs;

	/* Stored as SQL INTEGER (signed 64-bit). */
	if (ts < 0 || (int64_t)(abs->bytes_up | abs->bytes_down | abs->conns) < 0)
		return -ERANGE;
	int rc = sp_begin(s);
	if (rc)
		return rc;
	rc = row(s, S_CURSOR_GET, read_counters, &last, "tiit", kind, object_id, node_id, boot_id);
	if (rc == 0 && abs->bytes_up >= last.bytes_up && abs->bytes_down >= last.bytes_down &&
	    abs->conns >= last.conns) {
		d.bytes_up -= last.bytes_up;
		d.bytes_down -= last.bytes_down;
		d.conns -= last.conns;
	} else if (rc != -ENOENT && rc != 0) {
		return sp_end(s, rc);
	}
	rc = exec(s, S_CURSOR_PUT, "tiitiiii", kind, object_id, node_id, boot_id,
		  (int64_t)abs->bytes_up, (int64_t)abs->bytes_down, (int64_t)abs->conns, ts);
	if (!rc && (d.bytes_up | d.bytes_down | d.conns))
		rc = exec(s, S_MINUTE_ADD, "tiiiiii", kind, object_id, node_id, ts - ts % 60,
			  (int64_t)d.bytes_up, (int64_t)d.bytes_down, (int64_t)d.conns);
	rc = sp_end(s, rc);
	if (!rc && delta)
		*delta = d;
	return rc;
}

static int rollup_hours(struct fg_store *st, int64_t before_ts)
{
	struct sqlite_store *s = S(st);
	int64_t cut = before_ts - before_ts % 3600;
	int rc = sp_begin(s);
	if (rc)
		return rc;
	rc = exec(s, S_HOUR_ROLLUP, "i", cut);
	if (!rc)
		rc = exec(s, S_MINUTE_DELETE, "i", cut);
	if (!rc)
		rc = exec(s, S_CURSOR_PRUNE, "i", before_ts);
	return sp_end(s, rc);
}

static int query_series(struct fg_store *st, const struct fg_series_query *q,
			struct fg_stat_bucket **v, size_t *n)
{
	if (q->step < 60 || q->step % 60 || q->from < 0 || q->from >= q->to) {
		*v = NULL;
		*n = 0;
		return -EINVAL;
	}
	return list(S(st), S_SERIES, sizeof(**v), read_bucket, NULL, (void **)v, n, "tiiiiii",
		    q->kind, q->object_id, q->node_id, q->group_id, q->step, q->from, q->to);
}

static int audit_add(struct fg_store *st, int64_t ts, const char *who, const char *action,
		     const char *object_kind, int64_t object_id, const char *before,
		     const char *after)
{
	return exec(S(st), S_AUDIT_INSERT, "itttitt", ts, who, action, object_kind, object_id,
		    before, after);
}

static int audit_list(struct fg_store *st, int64_t before_id, size_t limit,
		      struct fg_audit_event **v, size_t *n)
{
	return list(S(st), S_AUDIT_LIST, sizeof(**v), read_audit, audit_deinit, (void **)v, n, "ii",
		    before_id, (int64_t)FG_MIN(limit, (size_t)INT64_MAX));
}

static const struct fg_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .schema_version = schema_version,
    .tx_begin = tx_begin,
    .tx_commit = tx_commit,
    .tx_rollback = tx_rollback,
    .user_create = user_create,
    .user_get = user_get,
    .user_get_by_name = user_get_by_name,
    .user_list = user_list,
    .user_set_password = user_set_password,
    .user_set_role = user_set_role,
    .token_create = token_create,
    .token_lookup = token_lookup,
    .token_delete = token_delete,
    .token_purge_expired = token_purge_expired,
    .node_create = node_create,
    .node_get = node_get,
    .node_get_by_name = node_get_by_name,
    .node_get_by_token = node_get_by_token,
    .node_list = node_list,
    .node_rename = node_rename,
    .node_delete = node_delete,
    .node_set_groups = node_set_groups,
    .node_groups = node_groups,
    .node_set_live = node_set_live,
    .node_bump_desired_rev = node_bump_desired_rev,
    .node_set_address = node_set_address,
    .node_set_peer = node_set_peer,
    .group_create = group_create,
    .group_get = group_get,
    .group_get_by_name = group_get_by_name,
    .group_list = group_list,
    .group_rename = group_rename,
    .group_delete = group_delete,
    .group_members = group_members,
    .forward_create = forward_create,
    .forward_get = forward_get,
    .forward_list = forward_list,
    .forward_update = forward_update,
    .forward_delete = forward_delete,
    .forwards_for_node = forwards_for_node,
    .forward_conflict = forward_conflict,
    .policy_create = policy_create,
    .policy_get = policy_get,
    .policy_get_by_name = policy_get_by_name,
    .policy_list = policy_list,
    .policy_update = policy_update,
    .policy_delete = policy_delete,
    .policies_for_node = policies_for_node,
    .tunnel_create = tunnel_create,
    .tunnel_get = tunnel_get,
    .tunnel_get_by_name = tunnel_get_by_name,
    .tunnel_list = tunnel_list,
    .tunnel_update = tunnel_update,
    .tunnel_delete = tunnel_delete,
    .tunnel_set_keys = tunnel_set_keys,
    .tunnels_for_node = tunnels_for_node,
    .port_conflict = port_conflict,
    .config_rev = config_rev,
    .config_bump = config_bump,
    .record_counters = record_counters,
    .rollup_hours = rollup_hours,
    .query_series = query_series,
    .audit_add = audit_add,
    .audit_list = audit_list,
};

/* Applies every migration newer than the file's schema_version in one
 * write transaction. */
static int migrate(struct sqlite_store *s)
{
	const int latest = FG_ARRAY_LEN(migrations);
	char *msg = NULL;
	int version, rc;

	if (sqlite3_exec(s->db,
			 "BEGIN IMMEDIATE;"
			 "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
			 NULL, NULL, &msg) != SQLITE_OK) {
		fg_err("store: schema_version: %s", msg);
		sqlite3_free(msg);
		rc = -EIO;
		goto out;
	}
	rc = schema_version(&s->base, &version);
	if (!rc && version > latest) {
		fg_err("store: schema version %d is newer than this binary's %d", version, latest);
		rc = -ENOTSUP;
	}
	for (int v = version + 1; !rc && v <= latest; v++) {
		if (sqlite3_exec(s->db, migrations[v - 1], NULL, NULL, &msg) != SQLITE_OK) {
			fg_err("store: migration %d: %s", v, msg);
			sqlite3_free(msg);
			rc = -EIO;
			break;
		}
		rc = exec(s, S_SCHEMA_INSERT, "d", v);
		if (!rc)
			fg_info("store: applied migration %d", v);
	}
	if (!rc)
		rc = exec(s, S_COMMIT, "");
out:
	if (!sqlite3_get_autocommit(s->db))
		exec(s, S_ROLLBACK, "");
	return rc;
}

int fg_store_sqlite_open(const char *path, struct fg_store **out)
{
	struct sqlite_store *s = fg_calloc(1, sizeof(*s));
	char *msg = NULL;
	int rc;

	if (!s)
		return -ENOMEM;
	s->base.ops = &sqlite_ops;
	/* The file holds password and token hashes: create it private (the
	 * -wal and -shm files inherit its mode). */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		fg_err("store: %s: %s", path, strerror(-rc));
		goto err;
	}
	close(fd);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		fg_err("store: %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
		rc = -EIO;
		goto err;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 5000);
	if (sqlite3_exec(s->db,
			 "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
			 "PRAGMA foreign_keys = ON",
			 NULL, NULL, &msg) != SQLITE_OK) {
		fg_err("store: %s: %s", path, msg);
		sqlite3_free(msg);
		rc = -EIO;
		goto err;
	}
	rc = migrate(s);
	if (rc)
		goto err;
	*out = &s->base;
	return 0;
err:
	sqlite_close(&s->base);
	return rc;
}
