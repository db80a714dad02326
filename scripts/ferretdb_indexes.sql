-- FerretDB v1 answers an equality filter on a top-level field (`_id`, or any
-- other with a string, integer, boolean or date value) with
-- `_jsonb->'field' @> $2`, which its own btree indexes on `_jsonb->'field'`
-- cannot serve: every such find, update and delete scans the whole collection
-- table, so each one gets slower as the collection grows (find_one by _id: 828/s
-- at 1k docs, 207/s at 10k). A GIN index (jsonb_path_ops) on the same
-- expression serves `@>`, which makes these lookups indexed as they are on
-- MongoDB. It is invisible to clients: FerretDB lists only the indexes in its
-- own metadata.
--
-- The keys indexed, in every collection that has them (a GIN index holds no
-- entry for a document without the key, so elsewhere it costs next to nothing):
--   _id             every lookup, update and delete by id;
--   job_id          a job's deliveries (GET /v1/jobs/{id}/deliveries, retention);
--   expires_bucket  the retention sweep's due jobs (conveyor_kernel.retention);
--   created_bucket  a list page's jobs, one second at a time, and ix_minute,
--                   ix_hour, ix_day, ix_dim the time index of those seconds
--                   (conveyor_kernel.listing);
--   status          a waiting status's few jobs (listing), and a job's counts.
--
-- Applied by scripts/infra.sh to FerretDB's PostgreSQL database: an event
-- trigger indexes each collection table FerretDB creates from now on, and the
-- DO block indexes the ones that exist already. Idempotent. The planner can
-- only match the index when the value is planned as a constant, so infra.sh
-- also sets plan_cache_mode = force_custom_plan for FerretDB's role.

CREATE OR REPLACE FUNCTION conveyor_index_ferretdb_id(t regclass) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  rel name;
  key text;
BEGIN
  SELECT relname INTO rel FROM pg_class WHERE oid = t;
  IF rel LIKE '\_ferretdb\_%' OR NOT EXISTS (
    SELECT FROM pg_attribute WHERE attrelid = t AND attname = '_jsonb' AND NOT attisdropped
  ) THEN
    RETURN;
  END IF;
  FOREACH key IN ARRAY ARRAY[
    '_id', 'job_id', 'expires_bucket', 'created_bucket', 'status',
    'ix_minute', 'ix_hour', 'ix_day', 'ix_dim'
  ] LOOP
    EXECUTE format(
      'CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((_jsonb -> %L) jsonb_path_ops)',
      CASE key WHEN '_id' THEN left(rel, 50) || '_id_gin' ELSE left(rel, 40) || '_' || key || '_gin' END,
      t, key
    );
  END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION conveyor_index_new_ferretdb_table() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  cmd record;
BEGIN
  FOR cmd IN
    SELECT objid FROM pg_event_trigger_ddl_commands()
    WHERE command_tag = 'CREATE TABLE' AND object_type = 'table'
  LOOP
    PERFORM conveyor_index_ferretdb_id(cmd.objid::regclass);
  END LOOP;
END
$fn$;

DO $do$
DECLARE
  t regclass;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'conveyor_ferretdb_id_gin') THEN
    CREATE EVENT TRIGGER conveyor_ferretdb_id_gin ON ddl_command_end
      WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION conveyor_index_new_ferretdb_table();
  END IF;
  FOR t IN
    SELECT c.oid::regclass FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = '_jsonb' AND NOT a.attisdropped
    WHERE c.relkind = 'r'
  LOOP
    PERFORM conveyor_index_ferretdb_id(t);
  END LOOP;
END
$do$;
