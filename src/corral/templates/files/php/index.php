<?php
// The start page of a new PHP site (`corral new php`): every *.php file runs in php-cgi (the
// built-in php.fastcgi engine); everything else is a static file served by Corral.
$name = $_POST["name"] ?? null;
?>
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>PHP on Corral</title>
  <link rel="stylesheet" href="style.css">
</head>
<body>
  <h1>PHP on Corral</h1>
  <p>It works: this is <code>index.php</code> under PHP <?= htmlspecialchars(PHP_VERSION) ?>.</p>
  <?php if ($name !== null): ?>
  <p>Nice to meet you, <?= htmlspecialchars($name) ?>.</p>
  <?php endif ?>
  <form method="post"><input name="name" placeholder="Your name"> <button>Send</button></form>
  <p>The site's <code>php.ini</code> (PHP_INI) is read by php-cgi and never served.</p>
</body>
</html>
