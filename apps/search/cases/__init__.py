"""Case memory (SPEC-CASES-001): past questions with the passages judged for them, reused for new questions
by a learned selector behind the `neural_case_selector` flag."""
