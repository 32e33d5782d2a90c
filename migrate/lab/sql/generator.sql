-- Session-local helpers for the set-based generators (they live in pg_temp, so nothing of
-- the generator survives in the seeded database).
-- Requires pg_temp.p_seed(), created by the Python side with the seed baked in as a
-- constant: an IMMUTABLE SQL function folds to a literal, so the hash below costs one
-- C call per use.

-- A deterministic uniform number in [0, 1) for the key (a, b) and the stream `salt`.
-- hashint8extended gives 64 well-mixed bits; the top 53 fill a double exactly.
-- Unlike random(), it needs no state, so any row can be generated in any order, and
-- parallel or re-ordered plans give the same data.
CREATE FUNCTION pg_temp.rnd(a bigint, b bigint, salt integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ((hashint8extended($1 * 1000003 + $2, pg_temp.p_seed() * 1000 + $3) >> 11)
            & 9007199254740991)::double precision / 9007199254740992.0
$$;

-- A deterministic integer in [0, n).
CREATE FUNCTION pg_temp.pick(a bigint, b bigint, salt integer, n integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT floor(pg_temp.rnd($1, $2, $3) * $4)::integer
$$;
