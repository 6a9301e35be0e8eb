package audit

// InsertArgs appends r's values to args, in InsertColumns' order (package
// commit inserts rows).
func (r *Row) InsertArgs(args []any) []any {
	return append(args, r.Chain, r.ChainSeq, r.At, r.RequestID, r.Transport, r.Subject, nonNil(r.Groups), r.Action, r.Tool,
		r.ConnectorType, r.InstanceID, r.Operation, r.Resource, r.Decision, r.Reason, r.PolicyVersion, r.TaskID, r.ProjectID,
		r.RunID, r.JobID, r.AgentID, r.Status, r.ErrorType, r.DurationUS, r.Count, nonNil(r.TaskBound), r.HashVersion,
		[]byte(r.PrevHash), []byte(r.Hash))
}

// nonNil is l, or an empty list for nil (the columns are NOT NULL).
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
