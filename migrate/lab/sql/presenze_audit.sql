-- The audit history the triggers of presenze_post.sql would have written over the years,
-- in the same shape as audit_row(): inserts of manual punches (whole row), and for updates
-- only the changed columns - direction corrections of terminal punches, decisions on leave
-- requests, closing/sending/reopening of monthly time sheets.
-- Runs after monthly_timesheet was loaded.

INSERT INTO audit_log (audit_id, occurred_at, actor, table_name, row_key, action,
                       old_row, new_row, client_addr)
SELECT row_number() OVER (ORDER BY a.occurred_at, a.table_name, a.row_key, a.action),
       a.occurred_at, a.actor, a.table_name, a.row_key, a.action, a.old_row, a.new_row, a.client_addr
FROM (
    SELECT p.recorded_at AS occurred_at, p.corrected_by AS actor,
           'punch' AS table_name, p.punch_id::text AS row_key, 'INSERT' AS action,
           NULL::jsonb AS old_row, to_jsonb(p) AS new_row,
           '10.12.0.0'::inet + (10 + pg_temp.pick(p.punch_id, 0, 70, 40)) AS client_addr
    FROM punch p
    WHERE p.origin = 'MAN'
    UNION ALL
    SELECT p.recorded_at + (1 + pg_temp.pick(p.punch_id, 0, 71, 3)) * interval '1 day',
           p.corrected_by, 'punch', p.punch_id::text, 'UPDATE',
           jsonb_build_object('direction', CASE p.direction WHEN 'IN' THEN 'OUT' ELSE 'IN' END,
                              'corrected_by', NULL, 'correction_note', NULL),
           jsonb_build_object('direction', p.direction, 'corrected_by', p.corrected_by,
                              'correction_note', p.correction_note),
           '10.12.0.0'::inet + (10 + pg_temp.pick(p.punch_id, 0, 70, 40))
    FROM punch p
    WHERE p.origin = 'TERM' AND p.corrected_by IS NOT NULL
    UNION ALL
    SELECT r.decided_at, coalesce(r.decided_by, 'web:' || s.employee_code), 'leave_request',
           r.request_id::text, 'UPDATE',
           jsonb_strip_nulls(jsonb_build_object('state', 'PENDING', 'updated_at', r.requested_at))
             || jsonb_build_object('decided_at', NULL)
             || CASE WHEN r.decided_by IS NULL THEN '{}' ELSE jsonb_build_object('decided_by', NULL) END,
           jsonb_strip_nulls(jsonb_build_object('state', r.state, 'updated_at', r.updated_at,
                                                'decided_at', r.decided_at, 'decided_by', r.decided_by)),
           '10.12.0.0'::inet + (10 + pg_temp.pick(r.request_id, 0, 72, 40))
    FROM leave_request r
    JOIN staff s ON s.employee_id = r.employee_id
    WHERE r.decided_at IS NOT NULL
    UNION ALL
    SELECT t.closed_at, t.closed_by, 'monthly_timesheet', t.timesheet_id::text, 'UPDATE',
           jsonb_build_object('state', 'OPEN', 'closed_at', NULL, 'closed_by', NULL, 'pdf_sha256', NULL,
                              'updated_at',
                              pg_temp.local_ts((t.period_month + interval '1 month')::date, 8100)),
           jsonb_build_object('state', 'CLOSED', 'closed_at', t.closed_at, 'closed_by', t.closed_by,
                              'pdf_sha256', t.pdf_sha256, 'updated_at', t.closed_at),
           '10.12.0.0'::inet + (10 + pg_temp.pick(t.timesheet_id, 0, 73, 40))
    FROM monthly_timesheet t
    WHERE t.closed_at IS NOT NULL
    UNION ALL
    SELECT t.sent_at, 'batch.paghe', 'monthly_timesheet', t.timesheet_id::text, 'UPDATE',
           jsonb_build_object('state', 'CLOSED', 'sent_at', NULL, 'updated_at', t.closed_at),
           jsonb_build_object('state', 'SENT', 'sent_at', t.sent_at, 'updated_at', t.sent_at),
           NULL::inet
    FROM monthly_timesheet t
    WHERE t.sent_at IS NOT NULL
    UNION ALL
    SELECT t.updated_at, t.closed_by, 'monthly_timesheet', t.timesheet_id::text, 'UPDATE',
           jsonb_build_object('state', 'SENT', 'updated_at', t.sent_at),
           jsonb_build_object('state', t.state, 'updated_at', t.updated_at),
           '10.12.0.0'::inet + (10 + pg_temp.pick(t.timesheet_id, 0, 73, 40))
    FROM monthly_timesheet t
    WHERE t.state = 'REOPENED'
) a
ORDER BY 1;
