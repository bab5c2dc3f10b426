<?php
// A page and a form: GET shows the form, POST greets the name sent.
$name = $_POST["name"] ?? null;
?>
<!doctype html>
<title>PHP on Corral</title>
<h1>Hello from PHP <?= PHP_VERSION ?> on Corral</h1>
<?php if ($name !== null): ?>
<p>Nice to meet you, <?= htmlspecialchars($name) ?>.</p>
<?php endif ?>
<form method="post"><input name="name" placeholder="Your name"> <button>Send</button></form>
<p>This page is <code><?= htmlspecialchars($_SERVER["SCRIPT_NAME"]) ?></code>; see also
<a href="info.php/some/path">a script with path info</a> and <a href="style.css">a static file</a>.</p>
