-- Monoduty schema. Applied idempotently by `monoduty migrate` (and at start-up of `monoduty dev`):
-- every statement must be safe to run again on a database that already has it.

CREATE TABLE IF NOT EXISTS users (
    id          uuid PRIMARY KEY,
    email       text NOT NULL,
    name        text,
    phone       text,                 -- E.164, default SMS/CALL target
    push_topic  text,                 -- default PUSH_NOTIF target
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON users (lower(email));

-- API keys: only a SHA-256 of the secret is stored (keys are 192 random bits, so a fast hash
-- is as strong as a slow one here and keeps the per-request lookup an index probe).
CREATE TABLE IF NOT EXISTS api_keys (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,       -- first characters, shown to recognise the key
    secret_hash  bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_user_idx ON api_keys (user_id);

CREATE TABLE IF NOT EXISTS webhooks (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name               text NOT NULL,
    description        text,
    alias              text NOT NULL,
    status             text NOT NULL DEFAULT 'ACTIVE',  -- engine.webhooks.WebhookStatus
    token              text NOT NULL UNIQUE,            -- the secret part of webhook_url
    notification_types text[] NOT NULL,                 -- engine.channels.registry.CHANNEL_TYPES
    targets            jsonb NOT NULL DEFAULT '{}',     -- {"email": [...], "sms": [...], ...}
    total_calls        bigint NOT NULL DEFAULT 0,
    successful_calls   bigint NOT NULL DEFAULT 0,
    failed_calls       bigint NOT NULL DEFAULT 0,
    pending_calls      bigint NOT NULL DEFAULT 0,
    last_call_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhooks_status_check CHECK (status IN ('ACTIVE', 'PAUSED')),
    CONSTRAINT webhooks_calls_add_up
        CHECK (total_calls = successful_calls + failed_calls + pending_calls)
);
CREATE INDEX IF NOT EXISTS webhooks_user_idx ON webhooks (user_id, created_at);

-- One inbound call. Test sends are alerts too (is_test), kept out of the call counters.
CREATE TABLE IF NOT EXISTS alerts (
    id           uuid PRIMARY KEY,             -- also the arq job id of process_alert
    webhook_id   uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_test      boolean NOT NULL DEFAULT false,
    status       text NOT NULL DEFAULT 'pending',  -- engine.alerts.lifecycle.AlertStatus
    title        text NOT NULL,
    message      text NOT NULL DEFAULT '',
    severity     text NOT NULL,                    -- engine.channels.base.SEVERITIES
    source       text,
    format       text NOT NULL,
    fingerprint  text,
    resolved     boolean NOT NULL DEFAULT false,
    details      jsonb NOT NULL DEFAULT '{}',
    request_id   text,
    received_at  timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CONSTRAINT alerts_status_check CHECK (status IN ('pending', 'successful', 'failed'))
);
CREATE INDEX IF NOT EXISTS alerts_webhook_idx ON alerts (webhook_id, received_at);
CREATE INDEX IF NOT EXISTS alerts_user_received_idx ON alerts (user_id, received_at);

-- A finished alert's outcome, not yet moved into its webhook's counters (engine.alerts.call_counts).
-- A finishing alert writes a row here instead of updating the webhook's row, which process_alert
-- holds locked while it stores each alert of the webhook: deliveries no longer queue on that lock.
-- The next alert stored on the webhook moves them in, under that lock; reads add what is left.
CREATE TABLE IF NOT EXISTS webhook_call_outcomes (
    alert_id    uuid PRIMARY KEY,
    webhook_id  uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    successful  boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_call_outcomes_webhook_idx ON webhook_call_outcomes (webhook_id);

-- One (channel, target) of one alert.
CREATE TABLE IF NOT EXISTS deliveries (
    id                uuid PRIMARY KEY,        -- also the arq job id of deliver
    alert_id          uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel           text NOT NULL,           -- engine.channels.registry.CHANNEL_TYPES
    target            text NOT NULL,
    status            text NOT NULL DEFAULT 'pending',  -- engine.alerts.lifecycle.DeliveryStatus
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text,
    provider_id       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_attempt_at   timestamptz,
    next_attempt_at   timestamptz,
    delivered_at      timestamptz,
    finished_at       timestamptz,
    CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled'))
);
CREATE INDEX IF NOT EXISTS deliveries_pending_idx ON deliveries (status) WHERE status = 'pending';

-- What `monoduty dev` would have sent: nothing leaves the machine in dev.
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL,
    target      text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    alert_id    uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- What a real message would have carried to act on it: its action links (the email's links, the
-- push's buttons and Click: {"page", "acknowledge", "resolve"}) and how to answer it (`reply`: an
-- SMS's reply line, a call's key menu).
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS actions jsonb;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS reply text;

-- One sample a minute of the system status, written by a worker cron job (engine/observability/uptime.py);
-- /api/uptime's percentages come from here. Kept 31 days.
CREATE TABLE IF NOT EXISTS health_samples (
    sampled_at  timestamptz PRIMARY KEY,      -- start of the minute the sample covers
    status      text NOT NULL,                -- engine.observability.status.Level
    details     jsonb NOT NULL DEFAULT '{}',  -- {"issues": [...]}
    CONSTRAINT health_samples_status_check CHECK (status IN ('operational', 'degraded', 'down'))
);
-- The in-app inbox: what the owner should know about (an alert arrived, a delivery failed for good,
-- a webhook was paused or hit its rate limit). Links are SET NULL so the history outlives them.
CREATE TABLE IF NOT EXISTS notifications (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL,                 -- engine.notifications.NotificationKind
    title       text NOT NULL,
    body        text NOT NULL DEFAULT '',
    webhook_id  uuid REFERENCES webhooks (id) ON DELETE SET NULL,
    alert_id    uuid REFERENCES alerts (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);
-- The inbox page, newest first, walked by keyset (created_at, id).
CREATE INDEX IF NOT EXISTS notifications_user_created_idx ON notifications (user_id, created_at DESC, id DESC);
-- Unread count (and ?unread=true) touch only unread rows: a small partial index, never a scan.
CREATE INDEX IF NOT EXISTS notifications_unread_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE read_at IS NULL;
-- Deleting a webhook (and its alerts) sets these links to NULL without scanning the inbox.
CREATE INDEX IF NOT EXISTS notifications_webhook_idx ON notifications (webhook_id) WHERE webhook_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_alert_idx ON notifications (alert_id) WHERE alert_id IS NOT NULL;
-- Accounts and security.
-- Passwords: argon2id hashes only (engine.auth.accounts); NULL for a key-only user.
ALTER TABLE users ADD COLUMN IF NOT EXISTS password_hash text;
-- The HMAC secret of a signed webhook (engine.alerts.signing). Kept as given, since a signature can only
-- be checked with the secret itself; the API shows only `signed: true|false`.
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS signing_secret text;

-- Incidents (engine.incidents): one problem of one webhook. Alerts with one dedup key join the open
-- incident of their webhook; the key is unique only while the incident is open, so after a resolve
-- the same key opens a new one. Created by process_alert in the transaction that stores the alert.
CREATE TABLE IF NOT EXISTS incidents (
    id                    uuid PRIMARY KEY,
    user_id               uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    webhook_id            uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    number                bigint NOT NULL,                 -- per team: #1, #2, ... (teams.incident_seq)
    title                 text NOT NULL,
    message               text NOT NULL DEFAULT '',
    severity              text NOT NULL,                   -- engine.channels.base.SEVERITIES
    status                text NOT NULL DEFAULT 'triggered',  -- engine.incidents.IncidentStatus
    dedup_key             text,                            -- NULL: joins nothing (dedupBy "none")
    source                text,
    alert_count           integer NOT NULL DEFAULT 0,
    first_alert_at        timestamptz NOT NULL,
    last_alert_at         timestamptz NOT NULL,
    acknowledged_at       timestamptz,
    acknowledged_by       text,                            -- engine.incidents.Actor
    acknowledged_by_user  uuid REFERENCES users (id) ON DELETE SET NULL,
    resolved_at           timestamptz,
    resolved_by           text,                            -- engine.incidents.Actor
    resolved_by_user      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT incidents_status_check CHECK (status IN ('triggered', 'acknowledged', 'resolved'))
);
-- The dedup rule itself: two workers opening one key at once make one incident (INSERT ... ON CONFLICT).
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_key ON incidents (webhook_id, dedup_key)
    WHERE status <> 'resolved';
-- GET /api/incidents, newest first by keyset (created_at, id).
CREATE INDEX IF NOT EXISTS incidents_user_created_idx ON incidents (user_id, created_at DESC, id DESC);
-- What happened to an incident, in order: who (user, sender, system) did what.
CREATE TABLE IF NOT EXISTS incident_events (
    id           bigserial PRIMARY KEY,
    incident_id  uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind         text NOT NULL,                 -- engine.incidents.EventKind
    actor        text NOT NULL,                 -- engine.incidents.Actor
    user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    alert_id     uuid REFERENCES alerts (id) ON DELETE SET NULL,
    text         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS incident_events_incident_idx ON incident_events (incident_id, id);
CREATE INDEX IF NOT EXISTS incident_events_alert_idx ON incident_events (alert_id) WHERE alert_id IS NOT NULL;
-- Per-owner incident numbers, from before teams (teams.incident_seq took over; see below).
ALTER TABLE users ADD COLUMN IF NOT EXISTS incident_seq bigint NOT NULL DEFAULT 0;
-- How a webhook groups alerts into incidents (values: engine.incidents.DedupBy) and which channels
-- hear of a resolve (never CALL: a recovery does not ring a phone).
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS dedup_by text NOT NULL DEFAULT 'group';
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS notify_on_resolve text[] NOT NULL DEFAULT '{EMAIL,PUSH_NOTIF}';
-- Page again when an Alertmanager/Grafana group's alert list changes (off: the change is recorded).
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS repage_on_change boolean NOT NULL DEFAULT false;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS incident_id uuid REFERENCES incidents (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS alerts_incident_idx ON alerts (incident_id, received_at) WHERE incident_id IS NOT NULL;
-- A delivery is a page of an incident, or its RESOLVED or ACKNOWLEDGED notice (values: engine.alerts.lifecycle.DeliveryKind).
-- A resolve or acknowledge by a person has no alert: its notices hang off the incident alone.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS incident_id uuid REFERENCES incidents (id) ON DELETE CASCADE;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'page';
ALTER TABLE deliveries ALTER COLUMN alert_id DROP NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_incident_idx ON deliveries (incident_id) WHERE incident_id IS NOT NULL;
-- Databases from before incidents: a page dropped by an acknowledge is 'cancelled' (final, not sent).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'deliveries_status_check'
                   AND pg_get_constraintdef(oid) LIKE '%cancelled%') THEN
        ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
        ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
            CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled'));
    END IF;
END $$;
-- Noise caps (engine.incidents.noise). Past MONODUTY_MAX_OPEN_INCIDENTS open incidents, alerts with
-- new keys join one overflow incident per webhook; these are the keys it holds (its title counts them).
CREATE TABLE IF NOT EXISTS incident_overflow_keys (
    incident_id  uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    dedup_key    text NOT NULL,
    PRIMARY KEY (incident_id, dedup_key)
);
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS overflow_keys integer NOT NULL DEFAULT 0;
-- A storm (more than 20 new incidents in a minute on one webhook) holds the pages of the incidents
-- past the 20th in one digest per webhook, sent when due (engine.incidents.digests): one delivery per
-- (channel, target) for all of them. PostgreSQL holds what is owed; a worker cron sweep claims due
-- digests with SKIP LOCKED, so whichever worker runs next sends it, once.
CREATE TABLE IF NOT EXISTS digests (
    id           uuid PRIMARY KEY,
    webhook_id   uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    opened_at    timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    sent_at      timestamptz,              -- its deliveries exist (none when nothing was left to page)
    enqueued_at  timestamptz,              -- their jobs are queued: the sweep is done with it
    title        text,
    message      text,
    severity     text,                     -- engine.channels.base.SEVERITIES
    alert_id     uuid REFERENCES alerts (id) ON DELETE SET NULL  -- one alert of it, for the Message
);
-- One digest collecting per webhook at a time.
CREATE UNIQUE INDEX IF NOT EXISTS digests_open_key ON digests (webhook_id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS digests_due_idx ON digests (due_at) WHERE enqueued_at IS NULL;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS digest_id uuid REFERENCES digests (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS incidents_digest_idx ON incidents (digest_id) WHERE digest_id IS NOT NULL;
-- The storm count: incidents a webhook opened in the last minute.
CREATE INDEX IF NOT EXISTS incidents_webhook_created_idx ON incidents (webhook_id, created_at);
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS digest_id uuid REFERENCES digests (id) ON DELETE CASCADE;
CREATE INDEX IF NOT EXISTS deliveries_digest_idx ON deliveries (digest_id) WHERE digest_id IS NOT NULL;
-- dedupBy "alert" (engine.incidents.attach.attach_each): one inbound alert, an Alertmanager or Grafana group
-- notification, belongs to one incident per alert of the group; alerts.incident_id names the first.
CREATE TABLE IF NOT EXISTS incident_alerts (
    incident_id  uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    alert_id     uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    PRIMARY KEY (incident_id, alert_id)
);
CREATE INDEX IF NOT EXISTS incident_alerts_alert_idx ON incident_alerts (alert_id);
-- One page per (alert, incident, channel, target): such an alert pages each of its incidents.
-- (Databases from before had it per (alert, channel, target).)
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_unique_target;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_unique_page ON deliveries (alert_id, incident_id, channel, target);

-- Teams (engine.teams): a team owns webhooks, schedules and policies; its members have a role.
-- Every user has one personal team (personal_user_id), made with the account in its transaction;
-- the two INSERTs below give one to every user of a database from before teams.
CREATE TABLE IF NOT EXISTS teams (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    personal_user_id  uuid UNIQUE REFERENCES users (id) ON DELETE CASCADE,  -- NULL: a shared team
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS team_members (
    team_id     uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL,                 -- engine.teams.Role
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id),
    CONSTRAINT team_members_role_check CHECK (role IN ('owner', 'admin', 'responder', 'viewer'))
);
-- "The teams of this user": every permission check starts here.
CREATE INDEX IF NOT EXISTS team_members_user_idx ON team_members (user_id, team_id);
INSERT INTO teams (id, name, personal_user_id, created_at)
    SELECT gen_random_uuid(), coalesce(nullif(u.name, ''), u.email), u.id, u.created_at FROM users u
    ON CONFLICT (personal_user_id) DO NOTHING;
INSERT INTO team_members (team_id, user_id, role, created_at)
    SELECT t.id, t.personal_user_id, 'owner', t.created_at FROM teams t WHERE t.personal_user_id IS NOT NULL
    ON CONFLICT (team_id, user_id) DO NOTHING;
-- One-time set-password links of invited users (engine.teams.invites): only a SHA-256 of the
-- token is kept; a link works once (used_at) and until expires_at.
CREATE TABLE IF NOT EXISTS invites (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    team_id      uuid REFERENCES teams (id) ON DELETE SET NULL,
    invited_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX IF NOT EXISTS invites_user_idx ON invites (user_id);
-- How one person is reached (engine.oncall.contacts): their contact methods, each a channel and a
-- target normalised by that channel's validator (engine.channels.registry). A phone number (SMS,
-- CALL) is paged only once verified_at is set; email and push methods are paged as they are.
CREATE TABLE IF NOT EXISTS contact_methods (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type         text NOT NULL,          -- engine.channels.registry.CHANNEL_TYPES
    target       text NOT NULL,
    verified_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contact_methods_unique_target UNIQUE (user_id, type, target)
);
-- The type is checked against the channel registry where methods are written (engine.oncall.contacts):
-- a CHECK listing the types made every new channel a schema change, so it goes.
ALTER TABLE contact_methods DROP CONSTRAINT IF EXISTS contact_methods_type_check;
-- "After delay_minutes, notify via contact method M" (engine.oncall.notification_rules).
CREATE TABLE IF NOT EXISTS notification_rules (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_method_id  uuid NOT NULL REFERENCES contact_methods (id) ON DELETE CASCADE,
    delay_minutes      integer NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_rules_delay_check CHECK (delay_minutes BETWEEN 0 AND 1440),
    CONSTRAINT notification_rules_unique UNIQUE (user_id, contact_method_id, delay_minutes)
);
CREATE INDEX IF NOT EXISTS notification_rules_method_idx ON notification_rules (contact_method_id);
-- The pending verification of a phone method (engine.oncall.verification): only a salted SHA-256
-- of the code is kept. tries_left counts down from 5; the 5th wrong code sets locked_until
-- (10 minutes) and forgets the code. sent_at also throttles sending (one code a minute).
CREATE TABLE IF NOT EXISTS contact_method_verifications (
    contact_method_id  uuid PRIMARY KEY REFERENCES contact_methods (id) ON DELETE CASCADE,
    code_hash          bytea,            -- NULL: no code to try (none sent, used up, or locked)
    salt               bytea,
    sent_at            timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    tries_left         integer NOT NULL DEFAULT 5,
    locked_until       timestamptz
);
-- Set once a user has had their default contact methods and rules (engine.oncall.contacts): new
-- users when they are created, users from before contact methods right here, once. A method the
-- user deletes later is not brought back by the next migrate.
ALTER TABLE users ADD COLUMN IF NOT EXISTS contact_defaults_at timestamptz;
INSERT INTO contact_methods (id, user_id, type, target, verified_at)
SELECT gen_random_uuid(), u.id, m.type, m.target, CASE WHEN m.type = 'EMAIL' THEN now() END
FROM users u
CROSS JOIN LATERAL (VALUES ('PUSH_NOTIF', u.push_topic), ('EMAIL', u.email), ('SMS', u.phone),
                           ('CALL', u.phone)) AS m (type, target)
WHERE u.contact_defaults_at IS NULL AND m.target IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO notification_rules (id, user_id, contact_method_id, delay_minutes)
SELECT gen_random_uuid(), c.user_id, c.id,
       CASE c.type WHEN 'SMS' THEN 1 WHEN 'CALL' THEN 3 ELSE 0 END  -- engine.oncall.contacts.DEFAULT_DELAYS
FROM contact_methods c JOIN users u ON u.id = c.user_id
WHERE u.contact_defaults_at IS NULL
ON CONFLICT DO NOTHING;
UPDATE users SET contact_defaults_at = now() WHERE contact_defaults_at IS NULL;

-- Escalation policies (engine.oncall.policies): a team's ordered steps "page these targets, then
-- wait delay_minutes", run again `repeat` times after the last. targets is a JSON array of
-- {"type": "user"|"schedule", "id": uuid}, checked by the engine (members and schedules of the team).
CREATE TABLE IF NOT EXISTS escalation_policies (
    id           uuid PRIMARY KEY,
    team_id      uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name         text NOT NULL,
    description  text,
    repeat       integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT escalation_policies_repeat_check CHECK (repeat BETWEEN 0 AND 9)
);
CREATE INDEX IF NOT EXISTS escalation_policies_team_idx ON escalation_policies (team_id, created_at);
CREATE TABLE IF NOT EXISTS escalation_steps (
    id             uuid PRIMARY KEY,
    policy_id      uuid NOT NULL REFERENCES escalation_policies (id) ON DELETE CASCADE,
    position       integer NOT NULL,
    delay_minutes  numeric NOT NULL,
    targets        jsonb NOT NULL,
    CONSTRAINT escalation_steps_delay_check CHECK (delay_minutes > 0),
    CONSTRAINT escalation_steps_unique_position UNIQUE (policy_id, position)
);
-- NULL: the webhook pages its targetChannels once, as the seed's API always did.
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS escalation_policy_id uuid
    REFERENCES escalation_policies (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS webhooks_escalation_policy_idx ON webhooks (escalation_policy_id)
    WHERE escalation_policy_id IS NOT NULL;
-- An incident's escalation (engine.oncall.escalation), in PostgreSQL, never only in Redis:
-- escalation_step is the index of the step last run (-1: none yet), escalation_loop the repeat it
-- is in, escalation_wave counts the times people were paged (steps run, reassignments: the key of
-- its pages), next_escalation_at when the next step is due (NULL: nothing left to do).
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS escalation_policy_id uuid
    REFERENCES escalation_policies (id) ON DELETE SET NULL;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS escalation_step integer NOT NULL DEFAULT -1;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS escalation_loop integer NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS escalation_wave integer NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS next_escalation_at timestamptz;
CREATE INDEX IF NOT EXISTS incidents_escalation_due_idx ON incidents (next_escalation_at)
    WHERE status = 'triggered' AND next_escalation_at IS NOT NULL;
-- Who an incident is assigned to: the users its last step (or a reassignment) paged.
CREATE TABLE IF NOT EXISTS incident_assignments (
    incident_id  uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    assigned_at  timestamptz NOT NULL,
    step         integer NOT NULL,
    loop         integer NOT NULL,
    PRIMARY KEY (incident_id, user_id)
);
CREATE INDEX IF NOT EXISTS incident_assignments_user_idx ON incident_assignments (user_id);
-- Planned pages: one notification rule of one paged user (or one channel target of a step, below)
-- for one incident, due at due_at. The sweep claims due ones (FOR UPDATE SKIP LOCKED), makes each a
-- delivery in the transaction that marks it sent, and queues the delivery after commit
-- (enqueued_at: queued, the sweep is done with it). Acknowledge and resolve cancel the pending ones
-- in their own transaction.
CREATE TABLE IF NOT EXISTS pages (
    id                 uuid PRIMARY KEY,
    incident_id        uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_method_id  uuid REFERENCES contact_methods (id) ON DELETE SET NULL,
    channel            text NOT NULL,
    target             text NOT NULL,
    step               integer NOT NULL,
    loop               integer NOT NULL,
    wave               integer NOT NULL,
    rule_delay         integer NOT NULL,
    due_at             timestamptz NOT NULL,
    status             text NOT NULL DEFAULT 'pending',  -- engine.oncall.paging.PageStatus
    reason             text,
    delivery_id        uuid REFERENCES deliveries (id) ON DELETE SET NULL,
    sent_at            timestamptz,
    enqueued_at        timestamptz,
    created_at         timestamptz NOT NULL,
    CONSTRAINT pages_status_check CHECK (status IN ('pending', 'sent', 'cancelled', 'skipped')),
    CONSTRAINT pages_unique_rule UNIQUE (incident_id, wave, user_id, contact_method_id, rule_delay)
);
CREATE INDEX IF NOT EXISTS pages_due_idx ON pages (due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS pages_unqueued_idx ON pages (sent_at) WHERE status = 'sent' AND enqueued_at IS NULL;
CREATE INDEX IF NOT EXISTS pages_incident_idx ON pages (incident_id, created_at);
CREATE INDEX IF NOT EXISTS pages_delivery_idx ON pages (delivery_id) WHERE delivery_id IS NOT NULL;
-- A person's contact method: its last message (the bundle window) and what else is due for it.
CREATE INDEX IF NOT EXISTS pages_contact_idx ON pages (user_id, channel, target, sent_at);
-- A page of a step's channel target (a team's mailing list or push topic) has no user and no
-- rule: user_id and contact_method_id NULL, rule_delay 0. One per (incident, wave, channel, target),
-- and this index also finds a channel target's last message and what else is due for it.
ALTER TABLE pages ALTER COLUMN user_id DROP NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS pages_unique_channel ON pages (incident_id, wave, channel, target)
    WHERE user_id IS NULL;
-- A page sent to a person (or a channel target) about an incident that paged them in an earlier
-- wave (an earlier step or round of its policy): a repeat. A bundle puts the first page of a new
-- incident ahead of repeats (engine.oncall.paging).
ALTER TABLE pages ADD COLUMN IF NOT EXISTS is_repeat boolean NOT NULL DEFAULT false;

-- Webhooks belong to a team; those from before teams go to their maker's personal team. user_id
-- stays: who made the webhook. Aliases were unique per user and are unique per team now (each
-- user's webhooks land in one team, so the old ones stay unique). A team with webhooks cannot be
-- deleted (engine.teams.members refuses it first; the foreign key is the backstop).
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS team_id uuid REFERENCES teams (id);
UPDATE webhooks w SET team_id = t.id FROM teams t WHERE w.team_id IS NULL AND t.personal_user_id = w.user_id;
ALTER TABLE webhooks ALTER COLUMN team_id SET NOT NULL;
DROP INDEX IF EXISTS webhooks_user_alias_key;
CREATE UNIQUE INDEX IF NOT EXISTS webhooks_team_alias_key ON webhooks (team_id, lower(alias));
CREATE INDEX IF NOT EXISTS webhooks_team_idx ON webhooks (team_id, created_at, id);
-- Incidents follow their webhook's team and are numbered per team: #1, #2, ... taken with
-- UPDATE teams ... RETURNING, so the team row's lock orders them. Numbers from before teams ran
-- per user; every incident of a user was in a webhook now in the user's personal team, so each
-- keeps its number, and the personal team's counter goes on from the user's.
ALTER TABLE teams ADD COLUMN IF NOT EXISTS incident_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS team_id uuid REFERENCES teams (id) ON DELETE CASCADE;
UPDATE incidents i SET team_id = w.team_id FROM webhooks w WHERE i.team_id IS NULL AND w.id = i.webhook_id;
UPDATE teams t SET incident_seq = u.incident_seq FROM users u
    WHERE t.personal_user_id = u.id AND t.incident_seq < u.incident_seq;
ALTER TABLE incidents ALTER COLUMN team_id SET NOT NULL;
ALTER TABLE incidents DROP CONSTRAINT IF EXISTS incidents_number_key;
CREATE UNIQUE INDEX IF NOT EXISTS incidents_team_number_key ON incidents (team_id, number);
-- GET /api/incidents over the caller's teams, newest first by keyset (created_at, id).
CREATE INDEX IF NOT EXISTS incidents_team_created_idx ON incidents (team_id, created_at DESC, id DESC);
-- The dashboard's count of a team's triggered incidents (its tab title), on every refresh.
CREATE INDEX IF NOT EXISTS incidents_team_open_idx ON incidents (team_id, status) WHERE status <> 'resolved';
-- GET /api/incidents?status=open (the dashboard's default list), newest first: walks open rows only,
-- however many resolved ones a team's history holds.
CREATE INDEX IF NOT EXISTS incidents_team_open_created_idx ON incidents (team_id, created_at DESC, id DESC)
    WHERE status <> 'resolved';
-- On-call schedules (engine.oncall.store maps these rows onto engine.oncall.model; the rules are
-- engine.oncall.schedules). A schedule belongs to a team; its rotations are layers in `position`
-- order (a later one wins where it covers the time).
CREATE TABLE IF NOT EXISTS schedules (
    id           uuid PRIMARY KEY,
    team_id      uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    time_zone    text NOT NULL,                -- IANA name (engine.oncall.validation.time_zone)
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS schedules_team_idx ON schedules (team_id, created_at);
-- A rotation's times are clock readings in the schedule's zone: `start` (the first handoff) is a
-- naive local wall time, active hours are local times of day. Participants are users, each a
-- member of the schedule's team when written (checked by engine.oncall.crud).
CREATE TABLE IF NOT EXISTS schedule_rotations (
    id               uuid PRIMARY KEY,
    schedule_id      uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    position         integer NOT NULL,
    name             text NOT NULL DEFAULT '',
    participants     uuid[] NOT NULL,
    shift_length     integer NOT NULL,
    shift_unit       text NOT NULL,            -- engine.oncall.model.ShiftUnit
    start            timestamp NOT NULL,
    active_weekdays  integer[],                -- date.weekday() numbers, 0 = Monday
    active_start     time,
    active_end       time,
    CONSTRAINT schedule_rotations_position_key UNIQUE (schedule_id, position),
    CONSTRAINT schedule_rotations_shift_unit_check CHECK (shift_unit IN ('hours', 'days', 'weeks')),
    CONSTRAINT schedule_rotations_active_hours_check CHECK (
        (active_weekdays IS NULL) = (active_start IS NULL) AND (active_start IS NULL) = (active_end IS NULL))
);
-- "user_id instead of whoever is on call" from start_at to end_at; with replaces_user_id only
-- while the rotations put that user on call. Among overlapping ones the later-made one wins.
CREATE TABLE IF NOT EXISTS schedule_overrides (
    id                uuid PRIMARY KEY,
    schedule_id       uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    replaces_user_id  uuid REFERENCES users (id) ON DELETE CASCADE,
    start_at          timestamptz NOT NULL,
    end_at            timestamptz NOT NULL,
    created_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedule_overrides_order_check CHECK (end_at > start_at)
);
CREATE INDEX IF NOT EXISTS schedule_overrides_schedule_idx ON schedule_overrides (schedule_id, end_at);
-- A calendar feed's URL is signed (engine.oncall.feeds); raising its version revokes the old URL.
ALTER TABLE schedules ADD COLUMN IF NOT EXISTS ical_version integer NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS ical_version integer NOT NULL DEFAULT 0;
-- The keys pressed during a page's phone call that acted (engine.incidents.call_keys): Twilio may
-- post one answer twice, and a key acts once per call.
CREATE TABLE IF NOT EXISTS call_key_presses (
    call_sid     text NOT NULL,
    digits       text NOT NULL,
    delivery_id  uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    pressed_at   timestamptz NOT NULL,
    PRIMARY KEY (call_sid, digits)
);

-- SMS replies (engine.incidents.sms_codes, engine.incidents.sms_replies). A page texted to a person
-- says "reply 3a to ack, 3c to close": its code is per phone number, the lowest one not held by an
-- earlier message to that number with an incident still open, so codes stay short and a code is
-- reused only once everything its message was about is resolved.
CREATE TABLE IF NOT EXISTS sms_reply_codes (
    phone        text NOT NULL,
    code         integer NOT NULL,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,  -- the person paged: acts as them
    delivery_id  uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    assigned_at  timestamptz NOT NULL,
    PRIMARY KEY (phone, code),
    CONSTRAINT sms_reply_codes_code_check CHECK (code > 0)
);
CREATE UNIQUE INDEX IF NOT EXISTS sms_reply_codes_delivery_idx ON sms_reply_codes (delivery_id);
-- Numbers that replied STOP (or another opt-out word): their SMS contact methods are not paged
-- until the number replies START (engine.oncall.contacts.opt_out). Kept per number, as the
-- provider keeps its own block: a method added later for that number is opted out too.
CREATE TABLE IF NOT EXISTS sms_opt_outs (
    phone         text PRIMARY KEY,
    opted_out_at  timestamptz NOT NULL
);
-- Help texts answered to a number on one UTC day (an unknown number, a reply we could not read):
-- at most engine.incidents.sms_replies.HELP_PER_DAY, so two robots cannot text each other for ever.
CREATE TABLE IF NOT EXISTS sms_help_replies (
    phone  text NOT NULL,
    day    date NOT NULL,
    sent   integer NOT NULL,
    PRIMARY KEY (phone, day)
);

-- Receipts (engine.alerts.receipts): what the provider says became of a delivery after it took it,
-- apart from `status` (whether we handed it over). receipt_status is engine.alerts.receipts.ReceiptStatus:
-- 'accepted' once handed over, then from Twilio's status callbacks 'sent' (on its way), 'delivered'
-- (the phone has the SMS, a person answered the call) or 'undelivered'; only ever moves forward.
-- provider_status is the provider's own word (Twilio's MessageStatus / CallStatus, an SMTP server's
-- 250 reply with its queue id), receipt_error its error code, reached_at when it reached the person
-- (a call: when it was answered), call_seconds and answered_by what Twilio says of a call.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS receipt_status text;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS provider_status text;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS receipt_error text;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS receipt_at timestamptz;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS reached_at timestamptz;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS call_seconds integer;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS answered_by text;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'deliveries_receipt_status_check') THEN
        ALTER TABLE deliveries ADD CONSTRAINT deliveries_receipt_status_check
            CHECK (receipt_status IN ('accepted', 'sent', 'delivered', 'undelivered'));
    END IF;
END $$;

-- Maintenance windows (engine.maintenance): planned work on one webhook, or every webhook of a team
-- (webhook_id NULL). Alerts inside one are stored and grouped; the incidents they open page nobody
-- and are held (incidents.maintenance_window_id) until the window ends. A worker cron claims windows
-- due to end with SKIP LOCKED and pages what they held that is still triggered, once (ended_at).
CREATE TABLE IF NOT EXISTS maintenance_windows (
    id           uuid PRIMARY KEY,
    team_id      uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    webhook_id   uuid REFERENCES webhooks (id) ON DELETE CASCADE,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text NOT NULL,
    page_on_end  boolean NOT NULL DEFAULT true,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL,
    ended_at     timestamptz,              -- the end sweep has released what it held
    enqueued_at  timestamptz,              -- ... and queued its pages: the sweep is done with it
    CONSTRAINT maintenance_windows_order_check CHECK (ends_at > starts_at)
);
CREATE INDEX IF NOT EXISTS maintenance_windows_team_idx ON maintenance_windows (team_id, ends_at);
CREATE INDEX IF NOT EXISTS maintenance_windows_due_idx ON maintenance_windows (ends_at) WHERE enqueued_at IS NULL;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS maintenance_window_id uuid
    REFERENCES maintenance_windows (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS incidents_maintenance_idx ON incidents (maintenance_window_id)
    WHERE maintenance_window_id IS NOT NULL;
-- Silences (engine.maintenance.silences), as Alertmanager's: an alert every matcher of an active
-- silence matches ({name, value, is_regex, is_equal} over severity, source, title and the sender's
-- labels) joins or opens an incident that does not page (incidents.silence_id); the first alert of
-- it after its silence ends pages it. Expired silences are kept (listed for 7 days).
CREATE TABLE IF NOT EXISTS silences (
    id          uuid PRIMARY KEY,
    team_id     uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    webhook_id  uuid REFERENCES webhooks (id) ON DELETE CASCADE,
    matchers    jsonb NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    comment     text NOT NULL,
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS silences_team_idx ON silences (team_id, ends_at);
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS silence_id uuid REFERENCES silences (id) ON DELETE SET NULL;

-- Heartbeats (engine.heartbeats): a ping expected on a webhook, every period or on a cron schedule;
-- a missed one opens an incident of the webhook (through the alert path, key monoduty:heartbeat:<id>).
-- The API's ping route writes a ping's row and the heartbeat's state; the workers' sweep claims the
-- heartbeats past due_at (FOR UPDATE SKIP LOCKED) and opens their incidents.
CREATE TABLE IF NOT EXISTS heartbeats (
    id              uuid PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    name            text NOT NULL,
    token           text NOT NULL UNIQUE,              -- the secret part of ping_url
    period_seconds  integer,                           -- a ping every period, or ...
    cron            text,                              -- ... at each time of a cron expression
    time_zone       text NOT NULL DEFAULT 'UTC',       -- the cron's zone (IANA name)
    grace_seconds   integer NOT NULL,
    status          text NOT NULL DEFAULT 'new',       -- engine.heartbeats.HeartbeatStatus
    last_ping_at    timestamptz,
    last_ping_kind  text,                              -- engine.heartbeats.PingKind
    started_at      timestamptz,                       -- a run begun (/start) that has not finished
    expected_at     timestamptz,                       -- when the next ping is expected
    due_at          timestamptz,                       -- when it is down without a ping (status up)
    down_since      timestamptz,                       -- its incident was opened (late or failed)
    grace_restarted_at timestamptz,                    -- after Monoduty's own outage (checks.py)
    ping_count      bigint NOT NULL DEFAULT 0,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT heartbeats_schedule_check CHECK ((period_seconds IS NULL) <> (cron IS NULL)),
    CONSTRAINT heartbeats_status_check CHECK (status IN ('new', 'up', 'down', 'paused'))
);
CREATE INDEX IF NOT EXISTS heartbeats_webhook_idx ON heartbeats (webhook_id, created_at, id);
CREATE INDEX IF NOT EXISTS heartbeats_due_idx ON heartbeats (due_at) WHERE status = 'up';
-- The last 100 stored pings of each heartbeat (a ping within the second of the last one of its
-- kind is counted in heartbeats.ping_count, not stored).
CREATE TABLE IF NOT EXISTS heartbeat_pings (
    id            bigserial PRIMARY KEY,
    heartbeat_id  uuid NOT NULL REFERENCES heartbeats (id) ON DELETE CASCADE,
    kind          text NOT NULL,                       -- engine.heartbeats.PingKind
    received_at   timestamptz NOT NULL,
    method        text NOT NULL,
    source_ip     text,
    user_agent    text,
    body          text NOT NULL DEFAULT '',            -- at most 10 KB of what was sent: its log
    CONSTRAINT heartbeat_pings_kind_check CHECK (kind IN ('success', 'start', 'fail'))
);
CREATE INDEX IF NOT EXISTS heartbeat_pings_heartbeat_idx ON heartbeat_pings (heartbeat_id, id);
-- Alerts a heartbeat raised whose deliveries and wake-ups are not queued yet: whoever raised one
-- queues them once it has committed and deletes its row; a process that died in between leaves
-- the row to the next sweep (deliveries are queued by their id, so never twice).
CREATE TABLE IF NOT EXISTS heartbeat_alerts (
    alert_id   uuid PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE,
    raised_at  timestamptz NOT NULL
);
-- When the workers swept, the latest last (engine.heartbeats.checks keeps the last few): after a gap
-- longer than a heartbeat's grace Monoduty itself was away, and grace restarts from the workers'
-- return. Rows are only added and trimmed, and locked rows skipped: no sweep waits for a lock.
CREATE TABLE IF NOT EXISTS heartbeat_sweeps (
    id        bigserial PRIMARY KEY,
    swept_at  timestamptz NOT NULL
);
-- Quiet hours: one user's nightly hours (local wall times in time_zone; ends before starts means
-- overnight) during which their pages of incidents below min_severity wait for the end, then go
-- as one bundle per contact method (engine.oncall.quiet_hours).
CREATE TABLE IF NOT EXISTS quiet_hours (
    user_id       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    starts        time NOT NULL,
    ends          time NOT NULL,
    time_zone     text NOT NULL,                       -- IANA name (engine.oncall.validation.time_zone)
    min_severity  text NOT NULL DEFAULT 'critical',    -- engine.channels.base.SEVERITIES
    updated_at    timestamptz NOT NULL,
    CONSTRAINT quiet_hours_min_severity_check CHECK (min_severity IN ('critical', 'error', 'warning', 'info')),
    CONSTRAINT quiet_hours_not_empty CHECK (starts <> ends)
);
-- A page held by its user's quiet hours: the end it waits for (its due_at is then, plus its rule's
-- delay). Changing or removing quiet hours, or the incident growing louder, makes it due again now.
ALTER TABLE pages ADD COLUMN IF NOT EXISTS quiet_until timestamptz;
CREATE INDEX IF NOT EXISTS pages_quiet_idx ON pages (user_id) WHERE status = 'pending' AND quiet_until IS NOT NULL;
-- The inbox reminder "maintenance ends in 10 minutes" went to the window's team
-- (engine.maintenance.reminders); a changed end asks for a new one.
ALTER TABLE maintenance_windows ADD COLUMN IF NOT EXISTS reminded_at timestamptz;
CREATE INDEX IF NOT EXISTS maintenance_windows_remind_idx ON maintenance_windows (ends_at)
    WHERE reminded_at IS NULL AND ended_at IS NULL;
-- The IANA zone a user's dashboard pages show times in (api.dashboard.zones.viewer_zone); NULL:
-- the browser's own.
ALTER TABLE users ADD COLUMN IF NOT EXISTS time_zone text;
-- A send in progress (engine.alerts.lifecycle.start_attempt): set, and committed, before the provider
-- is asked; cleared by whatever records the attempt's outcome. An attempt that finds it set follows one
-- whose worker died between the provider taking the message and its answer being recorded: it sends
-- again (a lost page is worse than a page twice) and the delivery is possibly_duplicated.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS sending_since timestamptz;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS possibly_duplicated boolean NOT NULL DEFAULT false;
