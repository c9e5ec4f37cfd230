"""Reading incoming mail: MIME parsing, HTML to text, and the visible part of a reply."""
