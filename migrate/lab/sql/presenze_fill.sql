-- Set-based generation of the big attendance tables.
-- Runs after the reference tables (staff, employment_period, badge, terminal, work_profile,
-- shift, holiday, reason_code) were loaded, in a session where generator.sql and the
-- parameter functions pg_temp.p_seed(), p_start(), p_end(), p_terminals() exist.
-- Every pseudo-random choice is pg_temp.rnd(key, key, stream): a pure function of the seed
-- and the row's identity, so the same seed always gives the same rows.
-- Times of day are seconds after local midnight in Europe/Rome; DST is handled by AT TIME ZONE.

CREATE FUNCTION pg_temp.local_ts(d date, sec integer) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ($1 + $2 * interval '1 second') AT TIME ZONE 'Europe/Rome' $$;

-- Working days of the window: Monday to Friday, holidays excluded.
CREATE TEMP TABLE cal AS
SELECT g.d::date AS work_date,
       g.d::date - DATE '2000-01-03' AS dn,            -- day number (2000-01-03 is a Monday)
       (g.d::date - DATE '2000-01-03') / 7 AS wk,      -- week number
       extract(isodow FROM g.d)::integer AS dow,
       extract(month FROM g.d)::integer AS mon
FROM generate_series(pg_temp.p_start()::timestamp, pg_temp.p_end()::timestamp, interval '1 day') AS g (d)
WHERE extract(isodow FROM g.d) < 6
  AND NOT EXISTS (SELECT 1 FROM holiday h WHERE h.holiday_date = g.d::date);

-- Day plan: one row per employee and working day under contract, with what the day is.
-- Holidays come in whole weeks (mostly August and Christmas), sick leave runs from some
-- weekday to the end of its week, smart working starts with the 2020 lockdown.
CREATE TEMP TABLE dp AS
SELECT e.employee_id, e.profile_id, c.work_date, c.dn, c.wk, c.dow,
       s.home_terminal_id, s.shift_worker,
       CASE
         WHEN pg_temp.rnd(e.employee_id, c.wk, 1)
                < CASE c.mon WHEN 8 THEN 0.5 WHEN 7 THEN 0.15 WHEN 12 THEN 0.2 ELSE 0.045 END
              AND c.dow <= 2 + pg_temp.pick(e.employee_id, c.wk, 2, 4) THEN 'FERIE'
         WHEN pg_temp.rnd(e.employee_id, c.wk, 3) < 0.035
              AND c.dow >= 1 + pg_temp.pick(e.employee_id, c.wk, 4, 5) THEN 'MAL'
         WHEN s.law104_entitled AND pg_temp.rnd(e.employee_id, c.dn, 5) < 0.13 THEN 'L104'
         WHEN s.union_delegate AND pg_temp.rnd(e.employee_id, c.dn, 6) < 0.05 THEN 'PSIND'
         WHEN pg_temp.rnd(e.employee_id, c.dn, 7) < 0.016 THEN 'FESOP'
         WHEN NOT s.shift_worker AND c.work_date >= DATE '2020-03-09'
              AND pg_temp.rnd(e.employee_id, c.dn, 8)
                    < CASE WHEN c.work_date <= DATE '2020-06-30' THEN 0.7 ELSE 0.1 END THEN 'LAGILE'
       END AS day_reason
FROM employment_period e
JOIN cal c ON c.work_date >= e.start_date AND (e.end_date IS NULL OR c.work_date <= e.end_date)
JOIN staff s ON s.employee_id = e.employee_id;

-- Day times: entry, optional short permit (out and back), optional lunch break, exit.
-- NULL means "no such punch". A few exits are missing (forgotten, never corrected).
CREATE TEMP TABLE dt AS
SELECT d.employee_id, d.profile_id, d.work_date, d.dn, d.wk, d.dow, d.home_terminal_id,
       d.day_reason, b.badge_id, a.present, a.web, a.expected_min, a.shift_code,
       p.partial_reason, t.t_in, l.lunch_out, l.lunch_in, q.perm_out, q.perm_in,
       o.extra_min, o.missing_exit,
       CASE WHEN a.present AND NOT o.missing_exit
            THEN t.t_in + a.expected_min * 60 + coalesce(l.lunch_in - l.lunch_out, 0)
                 + o.exit_jitter + o.extra_min * 60
       END AS t_out
FROM dp d
JOIN work_profile w ON w.profile_id = d.profile_id
LEFT JOIN badge b
  ON b.employee_id = d.employee_id AND d.work_date >= b.valid_from
 AND (b.valid_to IS NULL OR d.work_date <= b.valid_to)
CROSS JOIN LATERAL (
    SELECT d.day_reason IS NULL OR d.day_reason = 'LAGILE' AS present,
           d.day_reason IS NOT DISTINCT FROM 'LAGILE' AS web,
           d.dow = ANY (w.long_days) AS long_day,
           CASE WHEN d.dow = ANY (w.long_days) THEN w.long_day_minutes ELSE w.daily_minutes END
             AS expected_min,
           CASE WHEN d.shift_worker
                THEN CASE WHEN pg_temp.rnd(d.employee_id, d.wk, 9) < 0.5 THEN 'M' ELSE 'P' END
           END AS shift_code
) a
LEFT JOIN shift sh ON sh.code = a.shift_code
CROSS JOIN LATERAL (
    -- personal habit (+-5 min) plus a triangular daily jitter centred a little late
    SELECT extract(epoch FROM coalesce(sh.start_time, w.start_time))::integer
           + pg_temp.pick(d.employee_id, 0, 19, 600) - 300
           + pg_temp.pick(d.employee_id, d.dn, 20, 900) + pg_temp.pick(d.employee_id, d.dn, 21, 900)
           - 780 AS t_in
) t
CROSS JOIN LATERAL (
    SELECT CASE WHEN a.present AND NOT a.long_day AND a.expected_min >= 360
                THEN CASE WHEN pg_temp.rnd(d.employee_id, d.dn, 23) < 0.012 THEN 'VISMED'
                          WHEN pg_temp.rnd(d.employee_id, d.dn, 23) < 0.035 THEN 'PBREVE'
                          WHEN pg_temp.rnd(d.employee_id, d.dn, 23) < 0.045 AND NOT a.web THEN 'SERV'
                     END
           END AS partial_reason
) p
CROSS JOIN LATERAL (
    SELECT CASE WHEN a.present AND a.long_day
                THEN extract(epoch FROM w.start_time)::integer + 21600
                     + pg_temp.pick(d.employee_id, d.dn, 22, 900)
           END AS lunch_out
) l0
CROSS JOIN LATERAL (
    SELECT l0.lunch_out, l0.lunch_out + 1800 + pg_temp.pick(d.employee_id, d.dn, 24, 1800) AS lunch_in
) l
CROSS JOIN LATERAL (
    SELECT CASE WHEN p.partial_reason IS NOT NULL
                THEN t.t_in + 3600 + pg_temp.pick(d.employee_id, d.dn, 25, 5400)
           END AS perm_out
) q0
CROSS JOIN LATERAL (
    SELECT q0.perm_out,
           q0.perm_out + CASE p.partial_reason
                           WHEN 'VISMED' THEN 3600 + pg_temp.pick(d.employee_id, d.dn, 26, 5400)
                           WHEN 'PBREVE' THEN 1800 + pg_temp.pick(d.employee_id, d.dn, 26, 5400)
                           ELSE 3600 + pg_temp.pick(d.employee_id, d.dn, 26, 7200)
                         END AS perm_in
) q
CROSS JOIN LATERAL (
    SELECT CASE WHEN a.present AND NOT a.web AND p.partial_reason IS NULL
                     AND pg_temp.rnd(d.employee_id, d.dn, 27) < 0.05
                THEN 30 + 15 * pg_temp.pick(d.employee_id, d.dn, 28, 8)
                ELSE 0
           END AS extra_min,
           pg_temp.pick(d.employee_id, d.dn, 29, 2700) - 300 AS exit_jitter,
           a.present AND NOT a.web AND pg_temp.rnd(d.employee_id, d.dn, 30) < 0.002 AS missing_exit
) o;

-- Punches: up to six per day, unpivoted from dt.
--  * origin WEB on smart-working days; MAN where the employee forgot to badge and the
--    office inserted the punch days later (rounded to 5 minutes, with who and why);
--  * TERM otherwise; 7% at a terminal other than the home one; 1% swiped twice
--    (a duplicate a few seconds later); 0.3% had the direction corrected by the office;
--  * a terminal that was offline on a day uploads that day's punches the next morning,
--    so ids (assigned in recording order) are out of order with respect to punched_at.
INSERT INTO punch (punch_id, employee_id, badge_id, terminal_id, punched_at, direction,
                   reason_code, origin, corrected_by, correction_note, recorded_at)
SELECT row_number() OVER (ORDER BY z.recorded_at, z.punched_at, z.employee_id, z.slot, z.dup),
       z.employee_id, z.badge_id, z.terminal_id, z.punched_at, z.direction,
       z.reason_code, z.origin, z.corrected_by, z.correction_note, z.recorded_at
FROM (
    SELECT y.*,
           CASE
             WHEN y.origin = 'WEB' THEN y.punched_at
             WHEN y.origin = 'MAN' THEN greatest(
                 y.punched_at + interval '1 minute',
                 least(pg_temp.local_ts(y.work_date + 1 + pg_temp.pick(y.employee_id, y.pk, 37, 7),
                                        32400 + pg_temp.pick(y.employee_id, y.pk, 38, 28800)),
                       pg_temp.local_ts(pg_temp.p_end(), 64800)))
             WHEN pg_temp.rnd(y.terminal_id, y.dn, 34) < 0.008
               THEN pg_temp.local_ts(y.work_date + 1, 23400 + pg_temp.pick(y.terminal_id, y.dn, 35, 1800))
             ELSE y.punched_at + (1 + pg_temp.pick(y.employee_id, y.pk, 39, 4)) * interval '1 second'
           END AS recorded_at
    FROM (
        SELECT s.employee_id, s.work_date, s.dn, s.slot, s.pk, g.dup, s.direction, s.reason_code,
               s.origin,
               CASE WHEN s.origin = 'TERM' THEN s.badge_id END AS badge_id,
               CASE WHEN s.origin <> 'TERM' THEN NULL
                    WHEN pg_temp.rnd(s.employee_id, s.pk, 31) < 0.07
                      THEN 1 + pg_temp.pick(s.employee_id, s.pk, 32, pg_temp.p_terminals())
                    ELSE s.home_terminal_id
               END AS terminal_id,
               pg_temp.local_ts(s.work_date,
                                CASE WHEN s.origin = 'MAN' THEN s.sec / 300 * 300 ELSE s.sec END
                                + g.dup * (2 + pg_temp.pick(s.employee_id, s.pk, 33, 6))) AS punched_at,
               CASE WHEN s.origin = 'MAN'
                      THEN (ARRAY['ufficio.personale', 'a.bianchi', 'l.esposito', 'r.dell''orto'])
                           [1 + pg_temp.pick(s.employee_id, s.pk, 40, 4)]
                    WHEN s.origin = 'TERM' AND g.dup = 0 AND pg_temp.rnd(s.employee_id, s.pk, 41) < 0.003
                      THEN (ARRAY['ufficio.personale', 'a.bianchi'])
                           [1 + pg_temp.pick(s.employee_id, s.pk, 42, 2)]
               END AS corrected_by,
               CASE WHEN s.origin = 'MAN'
                      THEN (ARRAY['Timbratura omessa - dichiarazione del dipendente',
                                  'Badge dimenticato',
                                  'Terminale guasto',
                                  'Servizio esterno senza timbratura'])
                           [1 + pg_temp.pick(s.employee_id, s.pk, 43, 4)]
                    WHEN s.origin = 'TERM' AND g.dup = 0 AND pg_temp.rnd(s.employee_id, s.pk, 41) < 0.003
                      THEN 'Verso della timbratura corretto su segnalazione del dipendente'
               END AS correction_note
        FROM (
            SELECT d.employee_id, d.work_date, d.dn, d.badge_id, d.home_terminal_id,
                   v.slot, v.direction, v.sec, v.reason_code, d.dn * 8 + v.slot AS pk,
                   CASE WHEN d.web THEN 'WEB'
                        WHEN pg_temp.rnd(d.employee_id, d.dn * 8 + v.slot, 36) < 0.012 THEN 'MAN'
                        ELSE 'TERM'
                   END AS origin
            FROM dt d
            CROSS JOIN LATERAL (VALUES (1, 'IN',  d.t_in,      NULL::text),
                                       (2, 'OUT', d.perm_out,  d.partial_reason),
                                       (3, 'IN',  d.perm_in,   NULL),
                                       (4, 'OUT', d.lunch_out, NULL),
                                       (5, 'IN',  d.lunch_in,  NULL),
                                       (6, 'OUT', d.t_out,     NULL))
                 AS v (slot, direction, sec, reason_code)
            WHERE v.sec IS NOT NULL
            OFFSET 0                -- a fence: compute each row's origin once, not per use
        ) s
        CROSS JOIN LATERAL generate_series(
            0, CASE WHEN s.origin = 'TERM' AND pg_temp.rnd(s.employee_id, s.pk, 44) < 0.01 THEN 1 ELSE 0 END
        ) AS g (dup)
        OFFSET 0
    ) y
) z;

-- Daily balances, computed by the nightly batch. Whole-day justified absences and medical
-- visits count as done; a short permit (PBREVE) must be made up, so it lowers the balance.
INSERT INTO daily_balance (employee_id, work_date, profile_id, expected_minutes, worked_minutes,
                           absence_minutes, balance_minutes, reason_code, anomaly, closed, computed_at)
SELECT x.employee_id, x.work_date, x.profile_id, x.expected_min, x.worked,
       x.absence, x.worked + x.justified - x.expected_min,
       coalesce(x.partial_reason, x.day_reason),   -- a visit on a smart-working day is a visit
       CASE WHEN x.missing_exit THEN 'USCITA_MANCANTE' END,
       x.work_date < date_trunc('month', pg_temp.p_end())::date,
       pg_temp.local_ts(x.work_date + 1, 8100)
FROM (
    SELECT d.*,
           CASE WHEN NOT d.present THEN 0
                WHEN d.web THEN d.expected_min
                WHEN d.t_out IS NULL THEN NULL
                ELSE (d.t_out - d.t_in - coalesce(d.lunch_in - d.lunch_out, 0)
                      - CASE WHEN d.partial_reason IN ('VISMED', 'PBREVE')
                             THEN d.perm_in - d.perm_out ELSE 0 END) / 60
           END AS worked,
           CASE WHEN NOT d.present THEN d.expected_min
                WHEN d.partial_reason IN ('VISMED', 'PBREVE') THEN (d.perm_in - d.perm_out) / 60
                ELSE 0
           END AS absence,
           CASE WHEN NOT d.present THEN d.expected_min
                WHEN d.partial_reason = 'VISMED' THEN (d.perm_in - d.perm_out) / 60
                ELSE 0
           END AS justified
    FROM dt d
) x
ORDER BY x.employee_id, x.work_date;

-- Justifications: whole-day absences and the partial ones. Sick days carry the INPS
-- certificate number of their episode (one per employee and week).
INSERT INTO justification (justification_id, employee_id, work_date, reason_code, whole_day,
                           minutes, document_ref, approved_by, created_at)
SELECT row_number() OVER (ORDER BY j.employee_id, j.work_date, j.reason_code),
       j.employee_id, j.work_date, j.reason_code, j.whole_day, j.minutes, j.document_ref,
       j.approved_by, j.created_at
FROM (
    SELECT d.employee_id, d.work_date, d.day_reason AS reason_code, true AS whole_day,
           NULL::integer AS minutes,
           CASE WHEN d.day_reason = 'MAL'
                THEN 'INPS ' || lpad(pg_temp.pick(d.employee_id, d.wk, 45, 999999999)::text, 9, '0')
           END AS document_ref,
           CASE WHEN d.day_reason <> 'MAL'
                THEN (ARRAY['ufficio.personale', 'a.bianchi', 'l.esposito'])
                     [1 + pg_temp.pick(d.employee_id, d.dn, 46, 3)]
           END AS approved_by,
           pg_temp.local_ts(d.work_date - CASE WHEN d.day_reason = 'MAL' THEN 0 ELSE 3 END,
                            30600 + pg_temp.pick(d.employee_id, d.dn, 47, 3600)) AS created_at
    FROM dt d
    WHERE d.day_reason IS NOT NULL AND d.day_reason <> 'LAGILE'
    UNION ALL
    SELECT d.employee_id, d.work_date, d.partial_reason, false, (d.perm_in - d.perm_out) / 60,
           CASE WHEN d.partial_reason = 'VISMED' THEN 'Attestazione struttura sanitaria' END,
           CASE WHEN pg_temp.rnd(d.employee_id, d.dn, 48) < 0.9
                THEN (ARRAY['ufficio.personale', 'a.bianchi', 'l.esposito'])
                     [1 + pg_temp.pick(d.employee_id, d.dn, 46, 3)]
           END,
           pg_temp.local_ts(d.work_date, 64800 + pg_temp.pick(d.employee_id, d.dn, 47, 3600))
    FROM dt d
    WHERE d.partial_reason IS NOT NULL
) j
ORDER BY 1;

-- Shift rota of the shift workers (Polizia Locale): alternating weeks, morning/afternoon.
INSERT INTO shift_assignment (assignment_id, employee_id, work_date, shift_id)
SELECT row_number() OVER (ORDER BY d.employee_id, d.work_date), d.employee_id, d.work_date, sh.shift_id
FROM dt d
JOIN shift sh ON sh.code = d.shift_code
ORDER BY 1;

-- Leave requests: one per holiday week, one per day of other planned leave, one per short
-- permit, a few rejected or withdrawn ones, and pending requests for the coming weeks.
INSERT INTO leave_request (request_id, employee_id, reason_code, from_date, to_date, hours, state,
                           requested_at, decided_at, decided_by, note, updated_at)
SELECT row_number() OVER (ORDER BY r.requested_at, r.employee_id, r.from_date, r.reason_code, r.state),
       r.employee_id, r.reason_code, r.from_date, r.to_date, r.hours, r.state, r.requested_at,
       r.decided_at, r.decided_by, r.note, coalesce(r.decided_at, r.requested_at)
FROM (
    SELECT k.*,
           CASE WHEN k.state = 'PENDING' THEN NULL
                ELSE k.requested_at + (1 + pg_temp.pick(k.employee_id, k.key, 50, 3)) * interval '1 day'
                     + pg_temp.pick(k.employee_id, k.key, 51, 7200) * interval '1 second'
           END AS decided_at,
           CASE WHEN k.state IN ('APPROVED', 'REJECTED')
                THEN (ARRAY['dirigente.personale', 'resp.servizio', 'comandante.pl'])
                     [1 + pg_temp.pick(k.employee_id, k.key, 52, 3)]
           END AS decided_by
    FROM (
        SELECT h.*,
               CASE WHEN h.state = 'PENDING'
                    THEN pg_temp.local_ts(pg_temp.p_end() - pg_temp.pick(h.employee_id, h.key, 53, 6),
                                          32400 + pg_temp.pick(h.employee_id, h.key, 54, 25200))
                    ELSE pg_temp.local_ts(h.from_date - 2 - pg_temp.pick(h.employee_id, h.key, 53, 25),
                                          32400 + pg_temp.pick(h.employee_id, h.key, 54, 25200))
               END AS requested_at
        FROM (
            SELECT d.employee_id, 'FERIE' AS reason_code, min(d.work_date) AS from_date,
                   max(d.work_date) AS to_date, NULL::numeric AS hours, 'APPROVED' AS state,
                   d.wk::bigint AS key,
                   CASE WHEN pg_temp.rnd(d.employee_id, d.wk, 55) < 0.03
                        THEN 'Viaggio all''estero' END AS note
            FROM dt d WHERE d.day_reason = 'FERIE'
            GROUP BY d.employee_id, d.wk
            UNION ALL
            SELECT d.employee_id, d.day_reason, d.work_date, d.work_date, NULL, 'APPROVED',
                   d.dn + 100000, NULL
            FROM dt d WHERE d.day_reason IN ('FESOP', 'L104', 'PSIND')
            UNION ALL
            SELECT d.employee_id, 'PBREVE', d.work_date, d.work_date,
                   round((d.perm_in - d.perm_out) / 3600.0, 2), 'APPROVED', d.dn + 200000, NULL
            FROM dt d WHERE d.partial_reason = 'PBREVE'
            UNION ALL
            SELECT d.employee_id, 'FERIE', min(d.work_date) + 7, max(d.work_date) + 7, NULL,
                   CASE WHEN pg_temp.rnd(d.employee_id, d.wk, 56) < 0.5
                        THEN 'REJECTED' ELSE 'CANCELLED' END,
                   d.wk + 300000,
                   CASE WHEN pg_temp.rnd(d.employee_id, d.wk, 56) < 0.5 THEN 'Esigenze di servizio' END
            FROM dt d WHERE d.day_reason = 'FERIE'
            GROUP BY d.employee_id, d.wk
            HAVING pg_temp.rnd(d.employee_id, d.wk, 57) < 0.08
            UNION ALL
            SELECT s.employee_id, 'FERIE', pg_temp.p_end() + 17 + pg_temp.pick(s.employee_id, 0, 58, 14),
                   pg_temp.p_end() + 21 + pg_temp.pick(s.employee_id, 0, 58, 14), NULL, 'PENDING', -1, NULL
            FROM staff s WHERE s.active AND pg_temp.rnd(s.employee_id, 0, 59) < 0.3
        ) h
    ) k
) r
ORDER BY 1;

-- Overtime: the extra minutes at the end of some days, paid two months later.
INSERT INTO overtime (overtime_id, employee_id, work_date, minutes, rate, hourly_rate, amount,
                      authorized_by, paid_in_month)
SELECT row_number() OVER (ORDER BY x.employee_id, x.work_date),
       x.employee_id, x.work_date, x.extra_min, x.rate, x.hourly_rate,
       round(x.extra_min / 60.0 * x.hourly_rate * x.rate, 2),
       x.authorized_by, x.paid_in_month
FROM (
    SELECT d.employee_id, d.work_date, d.extra_min,
           CASE WHEN pg_temp.rnd(d.employee_id, d.dn, 60) < 0.1
                THEN 1.30 ELSE 1.15 END::numeric(3,2) AS rate,
           round((16.50 + pg_temp.rnd(d.employee_id, 0, 61) * 8)::numeric, 2) AS hourly_rate,
           CASE WHEN pg_temp.rnd(d.employee_id, d.dn, 62) < 0.85
                THEN (ARRAY['dirigente.personale', 'resp.servizio', 'comandante.pl'])
                     [1 + pg_temp.pick(d.employee_id, d.dn, 63, 3)]
           END AS authorized_by,
           CASE WHEN d.work_date < (date_trunc('month', pg_temp.p_end()) - interval '1 month')::date
                THEN (date_trunc('month', d.work_date) + interval '2 months')::date
           END AS paid_in_month
    FROM dt d
    WHERE d.extra_min > 0
) x
ORDER BY 1;

-- Raw upload lines of the offline terminals; about one file in ten was imported twice in
-- the same batch, leaving exact duplicate rows.
INSERT INTO terminal_import_raw (terminal_code, file_name, line_no, raw_line, imported_at)
SELECT f.terminal_code, f.file_name, f.line_no, f.raw_line, f.imported_at
FROM (
    SELECT t.code AS terminal_code, p.terminal_id, p.recorded_at AS imported_at,
           (p.punched_at AT TIME ZONE 'Europe/Rome')::date - DATE '2000-01-03' AS dn,
           t.code || '_' || to_char(p.punched_at AT TIME ZONE 'Europe/Rome', 'YYYYMMDD') || '.dat'
             AS file_name,
           row_number() OVER (PARTITION BY p.terminal_id, (p.punched_at AT TIME ZONE 'Europe/Rome')::date
                              ORDER BY p.punched_at, p.punch_id)::integer AS line_no,
           concat_ws(';', t.code, b.badge_number,
                     to_char(p.punched_at AT TIME ZONE 'Europe/Rome', 'YYYYMMDDHH24MISS'),
                     CASE p.direction WHEN 'IN' THEN 'E' ELSE 'U' END,
                     coalesce(p.reason_code, '0')) AS raw_line
    FROM punch p
    JOIN terminal t ON t.terminal_id = p.terminal_id
    JOIN badge b ON b.badge_id = p.badge_id
    WHERE p.origin = 'TERM' AND p.recorded_at > p.punched_at + interval '1 hour'
) f
CROSS JOIN LATERAL generate_series(
    1, CASE WHEN pg_temp.rnd(f.terminal_id, f.dn, 64) < 0.1 THEN 2 ELSE 1 END) AS g (copy_no)
ORDER BY f.imported_at, f.file_name, f.line_no, g.copy_no;
